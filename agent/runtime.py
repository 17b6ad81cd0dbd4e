"""Assembles the agent from its settings: model, pinning, vehicle clients, safety, handler."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agent import paths
from agent.config import AgentConfig
from agent.confirmations import Confirmations
from agent.dispatch import Dispatcher
from agent.errors import ModelError
from agent.handler import CommandHandler
from agent.inference import CommandModel
from agent.pinning import CoreLoadSampler, Pinner
from agent.registry import Registry
from agent.vehicle import VehicleClient
from agent.voice.speech_input import SpeechInput


@dataclass
class Runtime:
    model: CommandModel
    pinner: Pinner
    sampler: CoreLoadSampler | None
    dispatcher: Dispatcher
    handler: CommandHandler
    speech: SpeechInput | None = None  # None when voice.enabled is off

    def decode(self, text: str):
        with self.pinner.pinned():
            return self.model.decode(text)

    def close(self) -> None:
        if self.sampler:
            self.sampler.stop()
        self.dispatcher.close()


def model_path(config: AgentConfig) -> Path:
    path = Path(config.model.path) if config.model.path else paths.default_model()
    if not path.is_file():
        hint = "" if config.model.path else " (build it with `make model`, or give --model)"
        raise ModelError(f"no model at {path}{hint}")
    return path


def build_runtime(config: AgentConfig, registry: Registry) -> Runtime:
    threads = config.model.threads or os.cpu_count() or 1
    model = CommandModel(model_path(config), registry, threads=threads, n_ctx=config.model.context,
                         min_confidence=config.model.min_confidence,
                         min_argument_confidence=config.model.min_argument_confidence)
    sampler = None
    if config.pinning.enabled:
        sampler = CoreLoadSampler(config.pinning.sample_interval_s).start()
    pinner = Pinner(sampler, model.set_threads, count=config.pinning.cores, enabled=config.pinning.enabled)
    dispatcher = Dispatcher(registry, config.vehicle)
    vehicle = VehicleClient(dispatcher.channel, config.vehicle)
    runtime = Runtime(model, pinner, sampler, dispatcher, None)  # type: ignore[arg-type]
    runtime.handler = CommandHandler(runtime.decode, registry, dispatcher, vehicle,
                                     Confirmations(config.daemon.confirm_timeout_s))
    with pinner.pinned():
        model.warm_up()
    if config.voice.enabled:
        try:
            runtime.speech = SpeechInput.open(config.voice, model.path, pinner)
        except BaseException:
            runtime.close()
            raise
    return runtime
