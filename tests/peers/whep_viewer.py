"""WHEP test viewer: counts DECODED video frames (and audio frames) from gongkai.

Usage: whep_viewer.py URL SECONDS [--token T] [--codec h264|vp8] [--pli-every S]
                      [--drop-every N] [--retry-409] [--retry-every S] [--watch]
                      [--count N]
  --token      sent as `Authorization: Bearer T` (unlisted events' viewer tokens, staff
               preview credentials)
  --codec      offer only this video codec (codec preferences on the transceiver)
  --pli-every  send a PLI for the video stream every S seconds once frames arrive
  --drop-every lose every Nth video packet as the network would (before SRTP, so a
               retransmission is not a replay); counts "dropped" and "recovered" (a
               dropped sequence number that arrived again, i.e. was retransmitted)
  --retry-409  also retry a 409 with code `not_live` (a scheduled event, not yet on air)
  --retry-every retry a refused offer every S seconds (default: the Retry-After, at
               most 1 s)
  --watch      also print {"waiting": status, "code": error code, "at": unix seconds} at
               the first retried refusal and {"connection": state, "at": unix seconds} at
               each change of the peer connection's state, and stop as soon as the
               server ends the session (a DTLS close or an ICE failure): the final line
               then has "closed_by_remote": true
  --count      run N independent viewers (each its own peer connection) in this one
               process; each line then carries "viewer": index (0..N-1)
Retries a 503 (nobody publishing yet) every second, within SECONDS.
Prints {"status": code, "links": [...], "at": unix seconds} once the POST is answered
(the `Link` headers),
then one JSON line per second: {"video_frames": n, "audio_frames": m, "first_frame_s": f,
"first_frame_at": unix seconds, "plis_sent": p, "dropped": d, "recovered": r,
"reported_video_packets": s, "tracks": [kinds], "t": seconds since start}, where s is the
packet count in the last RTCP sender report for the video stream (aiortc's
remote-outbound-rtp statistics)
and a final {"done": true, ...}. A refusal that is not retried ends it with
{"done": true, "http_status": code, "code": error code, "retry_after": header}.
Frames counted are frames aiortc's decoder produced, not packets: forwarding that does
not decode counts zero.
"""

import argparse
import asyncio
import json
import time
import urllib.error
import urllib.request

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpreceiver import RTCRtpReceiver


def post(url, body, token):
    headers = {"Content-Type": "application/sdp"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=20) as response:
        return response.status, response.read().decode(), response.headers.get_all("Link") or []


def error_code(error):
    """The `code` of an `{"error": {"code", "message"}}` body, if any."""
    try:
        return json.loads(error.read().decode())["error"]["code"]
    except Exception:
        return None


def lose_video_packets(ice_transport, every, counts):
    """Drops every `every`th video RTP packet as it comes off the ICE transport."""
    receive = ice_transport._recv
    video_ssrcs = set()
    lost = set()
    seen = 0

    async def lossy_receive():
        nonlocal seen
        while True:
            data = await receive()
            # RTP, not RTCP (RFC 5761: RTCP packet types 192-223 in the second byte)
            if len(data) < 12 or not 127 < data[0] < 192 or 192 <= data[1] <= 223:
                return data
            ssrc = int.from_bytes(data[8:12], "big")
            seq = int.from_bytes(data[2:4], "big")
            # Opus packets are small; video packets of a frame are large.
            if len(data) > 400:
                video_ssrcs.add(ssrc)
            if ssrc not in video_ssrcs:
                return data
            if (ssrc, seq) in lost:
                lost.discard((ssrc, seq))
                counts["recovered"] += 1
                return data
            seen += 1
            if seen % every == 0:
                lost.add((ssrc, seq))
                counts["dropped"] += 1
                continue
            return data

    ice_transport._recv = lossy_receive


async def view(args, emit):
    counts = {
        "video_frames": 0,
        "audio_frames": 0,
        "first_frame_s": None,
        "first_frame_at": None,
        "plis_sent": 0,
        "dropped": 0,
        "recovered": 0,
        "reported_video_packets": 0,
        "tracks": [],
    }
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    closing = False
    remote_closed = asyncio.Event()

    @pc.on("connectionstatechange")
    def on_state():
        if not args.watch:
            return
        state = pc.connectionState
        emit({"connection": state, "at": time.time()})
        if state in ("closed", "failed") and not closing:
            remote_closed.set()

    video = pc.addTransceiver("video", direction="recvonly")
    if args.codec:
        wanted = "video/" + args.codec.upper()
        codecs = RTCRtpReceiver.getCapabilities("video").codecs
        video.setCodecPreferences(
            [c for c in codecs if c.mimeType.upper() in (wanted.upper(), "VIDEO/RTX")]
        )
    pc.addTransceiver("audio", direction="recvonly")
    started = time.monotonic()

    async def consume(track):
        key = "video_frames" if track.kind == "video" else "audio_frames"
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return
            counts[key] += 1
            if key == "video_frames" and counts["first_frame_s"] is None:
                counts["first_frame_s"] = round(time.monotonic() - started, 3)
                counts["first_frame_at"] = time.time()

    async def send_plis(receiver):
        while True:
            await asyncio.sleep(args.pli_every)
            sources = receiver.getSynchronizationSources()
            if counts["video_frames"] and sources:
                await receiver._send_rtcp_pli(sources[0].source)
                counts["plis_sent"] += 1

    @pc.on("track")
    def on_track(track):
        counts["tracks"].append(track.kind)
        asyncio.ensure_future(consume(track))
        if track.kind == "video" and args.pli_every:
            asyncio.ensure_future(send_plis(video.receiver))

    await pc.setLocalDescription(await pc.createOffer())
    if args.drop_every:
        lose_video_packets(video.receiver.transport.transport, args.drop_every, counts)
    # 503 (the publisher's tracks are not there yet), and with --retry-409 a 409
    # `not_live` (a scheduled event): retry as the player does.
    waiting = False
    while True:
        try:
            status, answer, links = await asyncio.to_thread(
                post, args.url, pc.localDescription.sdp.encode(), args.token
            )
            break
        except urllib.error.HTTPError as error:
            code = error_code(error)
            retry_after = error.headers.get("Retry-After")
            retryable = error.code == 503 or (
                args.retry_409 and error.code == 409 and code == "not_live"
            )
            if not retryable or time.monotonic() - started > args.seconds:
                emit(
                    {
                        "done": True,
                        "http_status": error.code,
                        "code": code,
                        "retry_after": retry_after,
                    }
                )
                closing = True
                await pc.close()
                return
            if args.watch and not waiting:
                emit({"waiting": error.code, "code": code, "at": time.time()})
            waiting = True
            if args.retry_every:
                await asyncio.sleep(args.retry_every)
            else:
                await asyncio.sleep(min(float(retry_after or 1), 1.0))
    emit({"status": status, "links": links, "at": time.time()})
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    deadline = started + args.seconds
    while time.monotonic() < deadline:
        try:
            await asyncio.wait_for(remote_closed.wait(), 1)
        except asyncio.TimeoutError:
            pass
        if remote_closed.is_set():
            await pc.close()
            emit(dict(counts, done=True, closed_by_remote=True, at=time.time()))
            return
        for stats in (await video.receiver.getStats()).values():
            if stats.type == "remote-outbound-rtp":
                counts["reported_video_packets"] = stats.packetsSent
        emit(dict(counts, t=round(time.monotonic() - started, 3)))
    closing = True
    await pc.close()
    emit(dict(counts, done=True))


async def main(args):
    def emitter(index):
        def emit(line):
            if args.count > 1:
                line = dict(line, viewer=index)
            print(json.dumps(line), flush=True)

        return emit

    await asyncio.gather(*(view(args, emitter(i)) for i in range(args.count)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("seconds", type=float)
    parser.add_argument("--token")
    parser.add_argument("--codec", choices=["h264", "vp8"])
    parser.add_argument("--pli-every", type=float, default=0.0)
    parser.add_argument("--drop-every", type=int, default=0)
    parser.add_argument("--retry-409", action="store_true")
    parser.add_argument("--retry-every", type=float, default=0.0)
    parser.add_argument("--watch", action="store_true")
    parser.add_argument("--count", type=int, default=1)
    asyncio.run(main(parser.parse_args()))
