"""`python -m bench.voice`: speech input measured end to end on the dev commands.

Each command is spoken by flite's voices (slt, rms), recognized by the
configured backend (pocketsphinx by default) constrained to the agent's
domain and, for comparison, with its general English model, then run
through the agent against a fresh simulator like `vehicle-agent eval`.
Reports word error rate, real-time factor, and command accuracy from speech
against the same commands typed (the target: >= 0.90 of it), with false and
wrong actuations apart. Writes bench/results/voice-<time>.json and a PNG.

    python -m bench.voice [--model FILE] [--cases FILE.jsonl] [--voices slt,rms] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench import measure
from bench.speech import spoken_form, synthesize, word_errors

REPO = Path(__file__).resolve().parent.parent


def run(model_path: Path, cases_path: Path, voices: list[str], out_dir: Path) -> Path:
    from agent.config import AgentConfig, VehicleSettings
    from agent.evaluation import load_cases, run_cases, summary
    from agent.registry import load_registry
    from agent.runtime import build_runtime
    from agent.sim.server import start_simulator
    from agent.transport import parse_uri
    from agent.voice.speech_input import SpeechInput
    from agent.voice.utterance import chunked

    registry = load_registry()
    cases = load_cases(cases_path)
    audio = {(voice, n): synthesize(case.text, voice) for voice in voices for n, case in enumerate(cases)}
    result: dict = {"machine": measure.machine(),
                    "settings": {"model": str(model_path), "cases": str(cases_path), "voices": voices}}
    with tempfile.TemporaryDirectory() as tmp:
        sim = start_simulator(registry, parse_uri(f"unix://{tmp}/vehicle.sock"))
        config = AgentConfig(vehicle=VehicleSettings(uri=str(sim.endpoint)))
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, path=str(model_path)))
        result["settings"]["voice"] = dataclasses.asdict(config.voice)
        runtime = build_runtime(config, registry)
        try:
            general = SpeechInput.open(dataclasses.replace(config.voice, domain=False), None, runtime.pinner)
            recognizers = {"domain": runtime.speech, "general": general}
            typed = summary(run_cases(runtime.handler, runtime.handler.vehicle, registry, cases))
            result["typed"] = _brief(typed)
            result["recognition"], result["spoken"], result["transcripts"] = {}, {}, []
            for name, speech in recognizers.items():
                for voice in voices:
                    errors = words = 0
                    rtf, final_ms, heard = [], [], []
                    for n, case in enumerate(cases):
                        transcript = speech.transcribe(chunked(audio[voice, n]))
                        e, w = word_errors(spoken_form(case.text), transcript.text)
                        errors, words = errors + e, words + w
                        rtf.append(transcript.real_time_factor)
                        final_ms.append(transcript.final_ms)
                        heard.append(transcript.text)
                        if name == "domain":
                            result["transcripts"].append({"voice": voice, "text": case.text, "heard": transcript.text})
                    result["recognition"][f"{name}/{voice}"] = {
                        "word_error_rate": round(errors / max(words, 1), 4),
                        "real_time_factor_median": round(statistics.median(rtf), 4),
                        "final_pass_ms_median": round(statistics.median(final_ms), 1)}
                    spoken_cases = [dataclasses.replace(c, text=t or " ") for c, t in zip(cases, heard)]
                    spoken = summary(run_cases(runtime.handler, runtime.handler.vehicle, registry, spoken_cases))
                    result["spoken"][f"{name}/{voice}"] = {**_brief(spoken),
                                                           "of_typed": round(spoken["accuracy"] / typed["accuracy"], 4)}
        finally:
            runtime.close()
            sim.stop(grace=None)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / time.strftime("voice-%Y%m%d-%H%M%S.json")
    path.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, path.with_suffix(".png"))
    return path


def _brief(s: dict) -> dict:
    return {k: s[k] for k in ("cases", "passed", "accuracy", "false_actuations", "wrong_actuations")}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["spoken"])
    fig, (acc, wer) = plt.subplots(1, 2, figsize=(10, 4))
    acc.bar(["typed"] + names, [result["typed"]["accuracy"]] + [result["spoken"][n]["accuracy"] for n in names],
            color=["grey"] + ["tab:blue" if n.startswith("domain") else "tab:orange" for n in names])
    acc.axhline(0.9 * result["typed"]["accuracy"], color="red", linestyle="--", label="0.90 of typed")
    acc.set(ylabel="dev command accuracy", title="commands: typed vs spoken", ylim=(0, 1))
    acc.legend()
    wer.bar(names, [result["recognition"][n]["word_error_rate"] for n in names],
            color=["tab:blue" if n.startswith("domain") else "tab:orange" for n in names])
    wer.set(ylabel="word error rate", title="recognition (domain LM vs general English)")
    for ax in (acc, wer):
        ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from agent import paths

    parser = argparse.ArgumentParser(prog="python -m bench.voice", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="command model (default: the built default)")
    parser.add_argument("--cases", type=Path, default=REPO.parent / "shared" / "eval" / "dev.jsonl")
    parser.add_argument("--voices", default="slt,rms", help="flite voices, comma-separated")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    path = run(args.model or paths.default_model(), args.cases, args.voices.split(","), args.out)
    result = json.loads(path.read_text())
    print(f"typed: accuracy {result['typed']['accuracy']:.3f}")
    for name, spoken in result["spoken"].items():
        rec = result["recognition"][name]
        print(f"{name}: WER {rec['word_error_rate']:.3f}, RTF {rec['real_time_factor_median']:.3f}, "
              f"accuracy {spoken['accuracy']:.3f} ({spoken['of_typed']:.2f} of typed), "
              f"false actuations {spoken['false_actuations']}, wrong {spoken['wrong_actuations']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
