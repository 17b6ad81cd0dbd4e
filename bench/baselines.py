"""What a user would pick instead of the functional-token model, as decoders for the agent's own pipeline.

- `HassilDecoder`: Home Assistant's rule-based matcher (hassil) fed the
  project's own phrase templates (their syntax is hassil's: alternatives,
  optional parts, {slots}); enum slots become value lists, numbers ranges,
  free text wildcards.
- `JsonToolDecoder`: the unpruned base model (Gemma 3 270M, from its PyPI
  package) prompted with every function's JSON schema, answering with a JSON
  tool call, decoded greedily by llama.cpp. The schema prefix is evaluated
  once and reused from the KV cache, as a serving stack would.

Both return `agent.inference.Decoded`, so the same safety policy, dispatch and
scoring apply to them as to the model.
"""

from __future__ import annotations

import json
import re
import time

from agent.decoding import Call
from agent.inference import Decoded
from agent.registry import Registry
from agent.templates import TemplateSet, resolve_fixed
from agent.textnorm import normalize

_NEG_SLOT = re.compile(r"\{(\w+):neg\}")


class HassilDecoder:
    def __init__(self, registry: Registry, templates: TemplateSet):
        from hassil import Intents

        self.registry = registry
        wildcards = {}
        intents = {}
        for spec in registry:
            data = []
            for template in templates.for_function(spec.name):
                lists = {}
                for arg in spec.args:
                    phrases = templates.slots.get(spec.name, {}).get(arg.name)
                    if phrases:
                        lists[arg.name] = {"values": [{"in": p, "out": value} for value, ps in phrases.items()
                                                      for p in ps]}
                    elif arg.type in ("int", "number"):
                        low, high = arg.min if arg.min is not None else 0, arg.max if arg.max is not None else 1000
                        if low < 0:  # relative changes are spoken as magnitudes; the sign is in the words
                            low, high = 0, max(abs(low), abs(high))
                        entry = {"from": int(low), "to": int(high)}
                        if arg.step and arg.step < 1:
                            entry["fractions"] = "halves" if arg.step >= 0.5 else "tenths"
                        lists[arg.name] = {"range": entry}
                    else:
                        wildcards[arg.name] = {"wildcard": True}
                data.append({"sentences": [_NEG_SLOT.sub(r"{\1}", template.text)], "lists": lists,
                             "metadata": {"fixed": template.fixed, "negated": _NEG_SLOT.findall(template.text)}})
            intents[spec.name] = {"data": data}
        self.intents = Intents.from_dict({"language": "en", "intents": intents, "lists": wildcards})

    def __call__(self, text: str) -> Decoded:
        from hassil import recognize

        started = time.perf_counter()
        text = normalize(text)
        result = recognize(text, self.intents)
        calls = []
        if result is not None:
            spec = self.registry.get(result.intent.name)
            meta = result.intent_data.metadata or {}
            args = {k: v for k, v in (meta.get("fixed") or {}).items()}
            for name, entity in result.entities.items():
                arg = spec.arg(name)
                value = entity.value
                try:
                    value = resolve_fixed(arg, value) if arg.type != "string" else str(value).strip()
                except (ValueError, TypeError):
                    pass  # left as matched: the safety policy refuses what the car cannot take
                if name in meta.get("negated", []) and isinstance(value, (int, float)):
                    value = -value
                args[name] = value
            calls = [Call(spec.name, args)]
        elapsed = (time.perf_counter() - started) * 1000
        return Decoded(text, calls, 0, elapsed, 0.0)


class JsonToolDecoder:
    def __init__(self, gguf_path, registry: Registry, threads: int = 2, n_ctx: int = 8192):
        import llama_cpp

        self.registry = registry
        self.llm = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=n_ctx, n_threads=threads, n_batch=512,
                                   verbose=False)
        tools = [_schema(spec) for spec in registry]
        self.prefix = (
            "<start_of_turn>user\nYou control a car. Functions:\n" + "\n".join(json.dumps(t) for t in tools) +
            '\nAnswer with one JSON object per call, one per line: {"name": ..., "arguments": {...}}. '
            'If the request is not something these functions do, answer [].\nRequest: ')
        self.prefix_tokens = len(self.llm.tokenize(self.prefix.encode(), add_bos=True, special=True))
        self("warm up")  # evaluates the shared prefix once; later requests reuse it from the KV cache

    def __call__(self, text: str) -> Decoded:
        prompt = self.prefix + normalize(text) + "<end_of_turn>\n<start_of_turn>model\n"
        started = time.perf_counter()
        out = self.llm.create_completion(prompt, max_tokens=48, temperature=0.0, top_k=1,
                                         stop=["<end_of_turn>", "\n\n"])
        elapsed = (time.perf_counter() - started) * 1000
        answer = out["choices"][0]["text"]
        return Decoded(normalize(text), self._calls(answer), out["usage"]["completion_tokens"], 0.0, elapsed)

    def _calls(self, answer: str) -> list[Call]:
        calls = []
        for match in re.finditer(r"\{.*\}", answer):
            try:
                obj = json.loads(match.group())
            except ValueError:
                continue
            name, args = obj.get("name"), obj.get("arguments") or {}
            if isinstance(name, str) and name in self.registry and isinstance(args, dict):
                spec = self.registry.get(name)
                known = {a.name for a in spec.args}
                calls.append(Call(name, {k: v for k, v in args.items() if k in known}))
        return calls


def _schema(spec) -> dict:
    properties = {}
    for arg in spec.args:
        entry: dict = {"type": {"int": "integer", "number": "number", "bool": "boolean"}.get(arg.type, "string")}
        if arg.values:
            entry["enum"] = list(arg.values)
        if arg.min is not None:
            entry["minimum"], entry["maximum"] = arg.min, arg.max
        properties[arg.name] = entry
    required = [a.name for a in spec.args if not a.has_default]
    return {"name": spec.name, "parameters": {"type": "object", "properties": properties, "required": required}}
