//! Static assets compiled into the binary: no CDN, no files to deploy beside it.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/app.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/app.js"),
    },
    Asset {
        name: "broadcast.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/broadcast.js"),
    },
    Asset {
        name: "player.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/player.js"),
    },
    Asset {
        name: "event.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/event.js"),
    },
    Asset {
        name: "staff.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/staff.js"),
    },
    Asset {
        name: "account.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/account.js"),
    },
    Asset {
        name: "staff-users.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/staff-users.js"),
    },
    Asset {
        name: "draw-core.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/draw-core.js"),
    },
    Asset {
        name: "draw-verify.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/draw-verify.js"),
    },
    Asset {
        name: "verify-worker.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/verify-worker.js"),
    },
    Asset {
        name: "verify-page.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/verify-page.js"),
    },
    Asset {
        name: "draw-util.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/draw-util.js"),
    },
    Asset {
        name: "draw-qrcode.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/draw-qrcode.js"),
    },
    Asset {
        name: "draw-live.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/draw-live.js"),
    },
    Asset {
        name: "draw-apply.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/draw-apply.js"),
    },
    Asset {
        name: "draw-witness.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/draw-witness.js"),
    },
    Asset {
        name: "draw-staff.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/draw-staff.js"),
    },
    Asset {
        name: "draw-parent.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/draw-parent.js"),
    },
];

pub async fn serve(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let etag = format!("\"{}\"", &hex::encode(Sha256::digest(asset.body))[..16]);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag)
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mut response = asset.body.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    response
}
