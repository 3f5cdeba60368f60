"""WHEP test viewer: counts DECODED video frames (and audio frames) from gongkai.

Usage: whep_viewer.py URL SECONDS [--token T] [--codec h264|vp8] [--pli-every S]
                      [--drop-every N]
  --token      sent as `Authorization: Bearer T` (unlisted events' viewer tokens)
  --codec      offer only this video codec (codec preferences on the transceiver)
  --pli-every  send a PLI for the video stream every S seconds once frames arrive
  --drop-every lose every Nth video packet as the network would (before SRTP, so a
               retransmission is not a replay); counts "dropped" and "recovered" (a
               dropped sequence number that arrived again, i.e. was retransmitted)
Retries a 503 (nobody publishing yet) every second, within SECONDS.
Prints {"status": code, "links": [...]} once the POST is answered (the `Link` headers),
then one JSON line per second: {"video_frames": n, "audio_frames": m, "first_frame_s": f,
"plis_sent": p, "dropped": d, "recovered": r, "reported_video_packets": s,
"t": seconds since start}, where s is the packet count in the last RTCP sender report
for the video stream (aiortc's remote-outbound-rtp statistics)
and a final {"done": true, ...}. Frames counted are frames aiortc's decoder produced, not
packets: forwarding that does not decode counts zero.
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


async def main(args):
    counts = {
        "video_frames": 0,
        "audio_frames": 0,
        "first_frame_s": None,
        "plis_sent": 0,
        "dropped": 0,
        "recovered": 0,
        "reported_video_packets": 0,
    }
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
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

    async def send_plis(receiver):
        while True:
            await asyncio.sleep(args.pli_every)
            sources = receiver.getSynchronizationSources()
            if counts["video_frames"] and sources:
                await receiver._send_rtcp_pli(sources[0].source)
                counts["plis_sent"] += 1

    @pc.on("track")
    def on_track(track):
        asyncio.ensure_future(consume(track))
        if track.kind == "video" and args.pli_every:
            asyncio.ensure_future(send_plis(video.receiver))

    await pc.setLocalDescription(await pc.createOffer())
    if args.drop_every:
        lose_video_packets(video.receiver.transport.transport, args.drop_every, counts)
    # 503 (the publisher's tracks are not there yet): retry as the player does.
    while True:
        try:
            status, answer, links = await asyncio.to_thread(
                post, args.url, pc.localDescription.sdp.encode(), args.token
            )
            break
        except urllib.error.HTTPError as error:
            if error.code != 503 or time.monotonic() - started > args.seconds:
                print(json.dumps({"done": True, "http_status": error.code}), flush=True)
                return
            await asyncio.sleep(min(float(error.headers.get("Retry-After") or 1), 1.0))
    print(json.dumps({"status": status, "links": links}), flush=True)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    deadline = started + args.seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(1)
        for stats in (await video.receiver.getStats()).values():
            if stats.type == "remote-outbound-rtp":
                counts["reported_video_packets"] = stats.packetsSent
        print(json.dumps(dict(counts, t=round(time.monotonic() - started, 3))), flush=True)
    await pc.close()
    print(json.dumps(dict(counts, done=True)), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("seconds", type=float)
    parser.add_argument("--token")
    parser.add_argument("--codec", choices=["h264", "vp8"])
    parser.add_argument("--pli-every", type=float, default=0.0)
    parser.add_argument("--drop-every", type=int, default=0)
    asyncio.run(main(parser.parse_args()))
