"""WHEP test viewer: counts DECODED video frames (and audio frames) from gongkai.

Usage: whep_viewer.py URL SECONDS
Prints one JSON line per second: {"video_frames": n, "audio_frames": m, "first_frame_s": f,
"t": seconds since start}
and a final {"done": true, ...}. Frames counted are frames aiortc's decoder produced, not
packets: forwarding that does not decode counts zero.
"""

import asyncio
import json
import sys
import time
import urllib.error
import urllib.request

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError


def post(url, body):
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/sdp"}
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        return response.status, response.read().decode()


async def main(url, seconds):
    counts = {"video_frames": 0, "audio_frames": 0, "first_frame_s": None}
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
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

    @pc.on("track")
    def on_track(track):
        asyncio.ensure_future(consume(track))

    await pc.setLocalDescription(await pc.createOffer())
    try:
        status, answer = await asyncio.to_thread(post, url, pc.localDescription.sdp.encode())
    except urllib.error.HTTPError as error:
        print(json.dumps({"done": True, "http_status": error.code}), flush=True)
        return
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    deadline = started + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(1)
        print(json.dumps(dict(counts, t=round(time.monotonic() - started, 3))), flush=True)
    await pc.close()
    print(json.dumps(dict(counts, done=True)), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
