"""WHIP test publisher: a synthetic moving VP8 video track (and a tone) to gongkai.

Usage: whip_publisher.py URL TOKEN SECONDS [vp8|h264] [--ignore-pli]
  --ignore-pli  never answer keyframe requests: after its first frame the encoder sends
                keyframes only at its own interval (aiortc's VP8: every 3000 frames), like
                an encoder configured with a fixed keyframe interval
Prints one JSON line per state change on stdout ("published", "ended") and exits after
SECONDS, deleting its session resource (a clean stop). Loopback only: no ICE servers.
"""

import asyncio
import fractions
import json
import sys
import time
import urllib.request

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from av import VideoFrame


class MovingPattern(VideoStreamTrack):
    """320x240 frames whose colour changes every frame, so every frame is real content."""

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        step = pts // 3000
        frame = VideoFrame(width=320, height=240, format="yuv420p")
        # A luma ramp that moves every frame; flat chroma. Plane buffers may be padded.
        luma = frame.planes[0]
        row = bytes((x + step * 4) % 256 for x in range(luma.line_size))
        luma.update(row * 240)
        for plane in frame.planes[1:]:
            plane.update(bytes([128]) * (plane.line_size * 120))
        frame.pts = pts
        frame.time_base = time_base
        return frame


def post(url, headers, body, method="POST"):
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=20) as response:
        # The message object, not a dict: header names are case-insensitive (HTTP/1.1
        # servers may send `location`).
        return response.status, response.headers, response.read().decode()


async def main(url, token, seconds, codec):
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    video = pc.addTransceiver(MovingPattern(), direction="sendonly")
    if codec != "vp8":
        preferred = [
            c
            for c in RTCRtpSender.getCapabilities("video").codecs
            if c.mimeType.lower() == f"video/{codec}"
        ]
        video.setCodecPreferences(preferred)
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    status, headers, answer = await asyncio.to_thread(
        post,
        url,
        {"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
        pc.localDescription.sdp.encode(),
    )
    location = headers.get("Location")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    print(json.dumps({"event": "published", "status": status, "location": location}), flush=True)
    await asyncio.sleep(seconds)
    base = url.split("/whip/")[0]
    try:
        await asyncio.to_thread(
            post, base + location, {"Authorization": f"Bearer {token}"}, None, "DELETE"
        )
    except Exception as error:  # the server may be gone already
        print(json.dumps({"event": "delete_failed", "error": str(error)}), flush=True)
    await pc.close()
    print(json.dumps({"event": "ended"}), flush=True)


def ignore_keyframe_requests():
    from aiortc.codecs import vpx

    encode = vpx.Vp8Encoder.encode

    def without_forced_keyframes(self, frame, force_keyframe=False):
        return encode(self, frame, False)

    vpx.Vp8Encoder.encode = without_forced_keyframes
    # A changed target bitrate (REMB) makes aiortc start a new encoder, whose first frame
    # is a keyframe: keep the bitrate fixed too.
    vpx.Vp8Encoder.target_bitrate = property(
        lambda self: vpx.DEFAULT_BITRATE, lambda self, bitrate: None
    )


if __name__ == "__main__":
    flags = [a for a in sys.argv[1:] if a.startswith("--")]
    positional = [a for a in sys.argv[1:] if not a.startswith("--")]
    if "--ignore-pli" in flags:
        ignore_keyframe_requests()
    codec = positional[3].lower() if len(positional) > 3 else "vp8"
    asyncio.run(main(positional[0], positional[1], float(positional[2]), codec))
