"""Instruction and chat examples as (prompt, completion) text pairs, and the config checks that
need no data.

    prompt, completion = render_instruction(config, row)      # data_format=instruction
    prompt, completion = render_chat(tokenizer, messages)     # data_format=chat

The model learns the completion; with loss_on=completion it learns nothing else
(engine.ml.samples masks the prompt's tokens).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from engine.core.config import ALPACA, EMBEDDED_DATASET, RunConfig
from engine.core.errors import ConfigError

# Stanford Alpaca's PROMPT_DICT (train.py), the prompt FlowerTune's instruction data follows.
ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_WITHOUT_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)
TEMPLATE_FIELDS = ("instruction", "input")


def check_data_format(config: RunConfig) -> None:
    """Refuse, in one line, a data_format setup that cannot work whatever the data holds."""
    if config.loss_on == "completion" and config.data_format == "text":
        raise ConfigError(
            "loss_on=completion needs prompts and completions: set data_format to instruction "
            "or chat (text data has no prompt to leave out)"
        )
    if config.data_format != "text" and config.dataset == EMBEDDED_DATASET:
        raise ConfigError(
            f"data_format={config.data_format} needs a dataset with "
            f"{'instruction columns' if config.data_format == 'instruction' else 'messages'}; "
            f"{EMBEDDED_DATASET} is plain code (data_format=text only)"
        )
    if config.data_format == "instruction" and config.prompt_template != ALPACA:
        check_prompt_template(config.prompt_template)


def check_prompt_template(template: str) -> None:
    """A custom prompt_template is a str.format template whose only fields are {instruction}
    (required) and {input}; literal braces are doubled."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as err:
        raise ConfigError(f"prompt_template {template!r} is not a valid template: {err}") from None
    unknown = [name for name in fields if name not in TEMPLATE_FIELDS]
    if unknown:
        raise ConfigError(
            f"prompt_template {template!r} has the field {{{unknown[0]}}}; it may use only "
            f"{{instruction}} and {{input}} (write a literal brace as {{{{ or }}}})"
        )
    if "instruction" not in fields:
        raise ConfigError(f"prompt_template {template!r} has no {{instruction}} field")


def render_instruction(config: RunConfig, row: Mapping[str, Any]) -> tuple[str, str]:
    """A row's prompt (its instruction and input in prompt_template) and completion (its output).
    With the alpaca template, an empty input selects Alpaca's prompt without an input section;
    a null input counts as empty, a null instruction or output is refused."""
    instruction = _cell(row, config.instruction_column, required=True)
    given_input = _cell(row, config.input_column, required=False)
    output = _cell(row, config.output_column, required=True)
    if config.prompt_template == ALPACA:
        template = ALPACA_WITH_INPUT if given_input.strip() else ALPACA_WITHOUT_INPUT
    else:
        template = config.prompt_template
    return template.format(instruction=instruction, input=given_input), output


def render_chat(tokenizer: Any, messages: Any) -> tuple[str, str]:
    """A conversation as the model's own chat template renders it: the prompt is every message
    before the last (the assistant's), followed by the template's generation prompt; the
    completion is the rest of the whole conversation's rendering (the last assistant turn)."""
    require_chat_template(tokenizer, tokenizer.name_or_path)
    conversation = _checked_messages(messages)
    try:
        prompt = tokenizer.apply_chat_template(
            conversation[:-1], tokenize=False, add_generation_prompt=True
        )
        whole = tokenizer.apply_chat_template(conversation, tokenize=False)
    except Exception as err:  # jinja2's errors, and what a template raises itself
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ConfigError(
            f"the chat template of model {tokenizer.name_or_path!r} cannot render the "
            f"conversation: {reason}"
        ) from None
    if not whole.startswith(prompt):
        raise ConfigError(
            f"the chat template of model {tokenizer.name_or_path!r} renders a conversation's "
            f"prompt differently alone and in the whole; its completion cannot be told apart"
        )
    return prompt, whole[len(prompt) :]


def require_chat_template(tokenizer: Any, model: str) -> None:
    """data_format=chat renders with the tokenizer's chat template: refuse one without."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            f"data_format=chat needs a chat template, but the tokenizer of model {model!r} has "
            f"none; use a chat (instruct) model or data_format=instruction"
        )


def _cell(row: Mapping[str, Any], column: str, *, required: bool) -> str:
    value = row[column]
    if value is None:
        if required:
            raise ConfigError(f"column {column!r} is empty")
        return ""
    return str(value)


def _checked_messages(messages: Any) -> list[dict[str, str]]:
    """The messages as {role, content} strings, the last one the assistant's."""
    shape = "a list of {role, content} messages ending with the assistant's"
    if not isinstance(messages, list) or not messages:
        raise ConfigError(f"messages must be {shape}; got {type(messages).__name__}")
    conversation = []
    for message in messages:
        if not (
            isinstance(message, Mapping)
            and isinstance(message.get("role"), str)
            and isinstance(message.get("content"), str)
        ):
            raise ConfigError(f"messages must be {shape}; got {message!r:.80}")
        conversation.append({"role": message["role"], "content": message["content"]})
    if conversation[-1]["role"] != "assistant":
        raise ConfigError(
            f"messages must be {shape}; the last one is the {conversation[-1]['role']}'s"
        )
    return conversation
