"""Instruction and chat examples rendered as (prompt, completion), and the data_format setups
refused before a run starts."""

import json

import pytest
from tokenizers import ByteLevelBPETokenizer
from transformers import PreTrainedTokenizerFast

from engine.core.config import RunConfig
from engine.core.errors import ConfigError
from engine.ml import preflight, prompts

# A chat template of the usual shape: each turn tagged with its role, then the assistant's tag
# when a generation prompt is asked for.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
CONVERSATION = [
    {"role": "system", "content": "You answer in one word."},
    {"role": "user", "content": "Capital of France?"},
    {"role": "assistant", "content": "Paris"},
]


def local_tokenizer(chat_template: str | None = CHAT_TEMPLATE) -> PreTrainedTokenizerFast:
    """A small byte-level BPE tokenizer built here (no Hub), with `chat_template`."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        ["You answer in one word. Capital of France? Paris"] * 4,
        vocab_size=300,
        special_tokens=["<pad>", "</s>"],
        show_progress=False,
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, pad_token="<pad>", eos_token="</s>", name_or_path="local/tiny-chat"
    )
    tokenizer.chat_template = chat_template
    return tokenizer


def refusal(call, *args) -> str:
    """The one line a ConfigError says."""
    with pytest.raises(ConfigError) as raised:
        call(*args)
    message = str(raised.value)
    assert "\n" not in message
    return message


# -- instruction data ---------------------------------------------------------------------------


def test_the_alpaca_prompt_with_an_input_is_stanford_alpacas():
    row = {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}
    prompt, completion = prompts.render_instruction(RunConfig(data_format="instruction"), row)
    assert prompt == (
        "Below is an instruction that describes a task, paired with an input that provides "
        "further context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nAdd the numbers.\n\n### Input:\n2 and 3\n\n### Response:\n"
    )
    assert completion == "5"


@pytest.mark.parametrize("no_input", ["", None, "  "])
def test_the_alpaca_prompt_without_an_input_has_no_input_section(no_input):
    row = {"instruction": "Name a colour.", "input": no_input, "output": "Blue"}
    prompt, completion = prompts.render_instruction(RunConfig(data_format="instruction"), row)
    assert prompt == (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nName a colour.\n\n### Response:\n"
    )
    assert completion == "Blue"


def test_a_custom_template_fills_instruction_and_input_from_the_named_columns():
    config = RunConfig(
        data_format="instruction",
        instruction_column="question",
        input_column="context",
        output_column="answer",
        prompt_template="Q: {instruction}\nContext: {input}\n{{braces}} A: ",
    )
    row = {"question": "Why?", "context": "{because}", "answer": "So."}
    assert prompts.render_instruction(config, row) == (
        "Q: Why?\nContext: {because}\n{braces} A: ",
        "So.",
    )


@pytest.mark.parametrize(
    "template, says",
    [
        ("{instruction} {inptu}", "has the field {inptu}; it may use only {instruction} and"),
        ("{instruction} {input.upper}", "has the field {input.upper}"),
        ("{instruction} {}", "has the field {}"),
        ("{instruction", "is not a valid template: expected '}' before end of string"),
        ("{instruction} }", "is not a valid template: Single '}' encountered"),
        ("Answer {input}:", "has no {instruction} field"),
    ],
)
def test_a_bad_prompt_template_is_refused_in_one_line(template, says):
    config = RunConfig(data_format="instruction", prompt_template=template, dataset="rows.jsonl")
    assert says in refusal(prompts.check_data_format, config)


def test_a_row_without_its_instruction_or_output_is_refused():
    config = RunConfig(data_format="instruction")
    row = {"instruction": "Say hi.", "input": "", "output": None}
    assert refusal(prompts.render_instruction, config, row) == "column 'output' is empty"


# -- chat data ----------------------------------------------------------------------------------


def test_a_chat_renders_through_the_tokenizers_own_template():
    prompt, completion = prompts.render_chat(local_tokenizer(), CONVERSATION)
    assert prompt == (
        "<|system|>\nYou answer in one word.\n<|user|>\nCapital of France?\n<|assistant|>\n"
    )
    assert completion == "Paris\n"


def test_only_the_last_assistant_turn_is_the_completion():
    earlier = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Goodbye"},
    ]
    prompt, completion = prompts.render_chat(local_tokenizer(), earlier)
    assert prompt.endswith("<|assistant|>\nHello\n<|user|>\nBye\n<|assistant|>\n")
    assert completion == "Goodbye\n"


def test_a_tokenizer_without_a_chat_template_is_refused_naming_the_model():
    assert refusal(prompts.render_chat, local_tokenizer(None), CONVERSATION) == (
        "data_format=chat needs a chat template, but the tokenizer of model 'local/tiny-chat' "
        "has none; use a chat (instruct) model or data_format=instruction"
    )


@pytest.mark.parametrize(
    "messages, says",
    [
        ("Capital of France?", "got str"),
        ([], "got list"),
        ([{"role": "user"}], "got {'role': 'user'}"),
        ([{"role": "user", "content": 3}], "a list of {role, content} messages"),
        (CONVERSATION[:2], "the last one is the user's"),
    ],
)
def test_malformed_messages_are_refused_in_one_line(messages, says):
    assert says in refusal(prompts.render_chat, local_tokenizer(), messages)


def test_a_template_that_raises_is_refused_with_its_reason():
    strict = "{{ raise_exception('Conversation roles must alternate user/assistant') }}"
    assert refusal(prompts.render_chat, local_tokenizer(strict), CONVERSATION).endswith(
        "cannot render the conversation: Conversation roles must alternate user/assistant"
    )


# -- before a run starts ------------------------------------------------------------------------


def test_chat_data_with_a_model_without_a_chat_template_is_refused_before_start(tmp_path):
    path = tmp_path / "chats.jsonl"
    path.write_text(json.dumps({"messages": CONVERSATION}) + "\n")
    config = RunConfig(dataset=str(path), data_format="chat")  # the embedded model: no template
    assert refusal(preflight.check, config) == (
        "data_format=chat needs a chat template, but the tokenizer of model 'embedded:tiny-opt' "
        "has none; use a chat (instruct) model or data_format=instruction"
    )


def test_completion_only_loss_on_plain_text_is_refused_before_start():
    config = RunConfig(loss_on="completion")
    assert refusal(preflight.check, config).startswith(
        "loss_on=completion needs prompts and completions: set data_format to instruction or chat"
    )


@pytest.mark.parametrize("data_format", ["instruction", "chat"])
def test_the_embedded_code_corpus_is_refused_for_instruction_and_chat_data(data_format):
    says = refusal(preflight.check, RunConfig(data_format=data_format))
    assert says.startswith(f"data_format={data_format} needs a dataset with")
    assert says.endswith("embedded:stdlib-code is plain code (data_format=text only)")
