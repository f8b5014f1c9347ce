"""What the global model writes after a round, recorded beside its eval loss: its completions
of `generation_prompts` (greedy, for the monitor's samples view) and, every `code_eval.every`
rounds, its code for a benchmark's problems, each program run against the problem's tests in a
sandbox (engine.system.sandbox) and scored as pass@k (engine.ml.code_eval)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from engine.core import events as ev
from engine.core.config import RunConfig
from engine.ml import code_eval
from engine.ml.generation import generate
from engine.system.sandbox import network_isolation

# Sequences generated at once: on a CPU, decoding a ~135M model reads its weights each step, so
# a batch of 16 costs about what one of 8 does (BENCHMARKS.md, "code_eval: generation speed").
CODE_BATCH_SIZE = 16


class ModelWrites:
    def __init__(
        self,
        config: RunConfig,
        model: torch.nn.Module,
        tokenizer,
        device: torch.device,
        precision: str,
        publish: Callable[..., None],
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.device, self.precision = device, precision
        self.publish = publish
        settings = config.code_eval
        self.problems = (
            code_eval.load_problems(settings.benchmark, settings.problems, config.seed)
            if settings.enabled
            else []
        )
        if self.problems and (why := network_isolation()) is not None:
            publish(ev.WARNING, message=why)

    def after_round(self, server_round: int, config: RunConfig) -> float | None:
        """Write and score what this round asks for; the round's pass@1, when it measured it."""
        if config.generation_prompts:
            self._complete_prompts(server_round, config)
        if self.problems and server_round % config.code_eval.every == 0:
            return self._score_code(server_round, config)
        return None

    def _complete_prompts(self, server_round: int, config: RunConfig) -> None:
        written = generate(
            self.model,
            self.tokenizer,
            config.generation_prompts,
            max_new_tokens=config.generation_max_new_tokens,
            device=self.device,
            precision=self.precision,
        )
        self.publish(
            ev.GENERATED,
            round=server_round,
            samples=[
                {"prompt": prompt, "completion": completions[0]}
                for prompt, completions in zip(config.generation_prompts, written.texts)
            ],
            seconds=written.seconds,
        )

    def _score_code(self, server_round: int, config: RunConfig) -> float:
        settings = config.code_eval
        written = generate(
            self.model,
            self.tokenizer,
            [problem.prompt for problem in self.problems],
            max_new_tokens=settings.max_new_tokens,
            device=self.device,
            temperature=settings.temperature,
            samples_per_prompt=settings.samples_per_problem,
            seed=config.seed * 1_000 + server_round,
            batch_size=CODE_BATCH_SIZE,
            precision=self.precision,
            stop=code_eval.truncate,
        )
        scored = code_eval.score(self.problems, written.texts, timeout=settings.timeout)
        self.publish(
            ev.CODE_EVAL,
            round=server_round,
            pass_at={str(k): value for k, value in scored.pass_at.items()},
            benchmark=settings.benchmark,
            problems=len(self.problems),
            samples_per_problem=settings.samples_per_problem,
            passed=sum(1 for count in scored.passed.values() if count),
            generation_seconds=written.seconds,
            execution_seconds=scored.seconds,
        )
        return scored.pass_at[1]
