import json
from dataclasses import replace

import numpy as np
import pytest

from engine.core.config import RunConfig
from engine.core.errors import ConfigError
from engine.ml import data, prompts
from engine.ml.model import load_base_model, load_model
from engine.ml.samples import COMPLETION_CUT, TRUNCATED, WHOLE
from tests.test_prompts import CONVERSATION, local_tokenizer

SMALL = dict(num_clients=2, samples_per_client=24, eval_samples=8, seq_len=32)


def test_embedded_corpus_gives_each_client_and_the_eval_set_its_samples():
    config = RunConfig(**SMALL)
    data.prepare(config)
    eval_set = data.load_eval_samples(config)
    clients = [data.load_client_samples(config, k) for k in range(2)]
    assert eval_set.ids.shape == (8, 32)
    assert [c.ids.shape for c in clients] == [(24, 32), (24, 32)]
    assert all(c.mask.sum() > 0.9 * c.mask.size for c in clients)  # mostly real tokens
    assert not np.array_equal(clients[0].ids, clients[1].ids)


def test_partitions_are_a_function_of_the_seed():
    first = data.load_client_samples(RunConfig(**SMALL, seed=1), 0)
    again = data.load_client_samples(RunConfig(**SMALL, seed=1), 0)
    other = data.load_client_samples(RunConfig(**SMALL, seed=2), 0)
    np.testing.assert_array_equal(first.ids, again.ids)
    assert not np.array_equal(first.ids, other.ids)


def test_by_source_gives_each_client_whole_sources_of_its_own(tmp_path):
    # 12 repositories, each with documents that contain only that repository's marker word
    path = tmp_path / "code.jsonl"
    with open(path, "w") as handle:
        for repo in range(12):
            for doc in range(4):
                text = f"def repo{repo}_fn{doc}():\n    return {repo}\n" * 30
                handle.write(json.dumps({"content": text, "repo_name": f"org/repo{repo}"}) + "\n")
    config = RunConfig(dataset=str(path), partition="by-source", **SMALL)
    tokenizer = data.load_tokenizer(config)
    repos_per_client = []
    for client in range(2):
        samples = data.load_client_samples(config, client)
        texts = tokenizer.batch_decode(samples.ids, skip_special_tokens=True)
        repos_per_client.append(
            {repo for repo in range(12) for text in texts if f"repo{repo}_" in text}
        )
    assert repos_per_client[0] and repos_per_client[1]
    assert not repos_per_client[0] & repos_per_client[1]


def test_dirichlet_partitions_are_seeded_and_a_small_alpha_gives_fewer_sources():
    def summary(alpha, seed=0):
        config = RunConfig(
            num_clients=4, samples_per_client=64, eval_samples=8, seq_len=32,
            partition="dirichlet", dirichlet_alpha=alpha, seed=seed,
        )  # fmt: skip
        return data.load_partition_summary(config), data.load_client_samples(config, 0)

    (narrow, first), (again, first_again) = summary(0.1), summary(0.1)
    wide, _ = summary(10.0)
    other_seed, _ = summary(0.1, seed=1)

    assert narrow == again and np.array_equal(first.ids, first_again.ids)  # seeded
    assert narrow != other_seed
    assert all(c["samples"] == 64 for c in narrow + wide)

    def mean(rows, key):
        return sum(row[key] for row in rows) / len(rows)

    assert mean(narrow, "sources") < mean(wide, "sources")
    assert mean(narrow, "largest_source_share") > mean(wide, "largest_source_share")


def test_a_partition_summary_counts_each_clients_sources():
    config = RunConfig(partition="by-source", **SMALL)
    rows = data.load_partition_summary(config)
    clients = [data.load_client_samples(config, k) for k in range(2)]
    assert [row["client"] for row in rows] == [0, 1]
    for row, samples in zip(rows, clients):
        names, counts = np.unique(samples.sources, return_counts=True)
        assert (row["samples"], row["sources"]) == (24, len(names))
        assert row["largest_source_share"] == pytest.approx(counts.max() / 24)


def test_iid_split_of_a_file_dataset_mixes_sources(tmp_path):
    path = tmp_path / "code.jsonl"
    with open(path, "w") as handle:
        for repo in range(6):
            for doc in range(8):
                handle.write(json.dumps({"content": f"x_{repo} = {doc}\n" * 40}) + "\n")
    config = RunConfig(dataset=str(path), **SMALL)
    texts = data.load_tokenizer(config).batch_decode(data.load_client_samples(config, 0).ids)
    assert len({repo for repo in range(6) for text in texts if f"x_{repo} " in text}) >= 3


def test_text_files_load_through_the_same_path(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("".join(f"print('line {i}')  # some python code here\n" for i in range(3000)))
    config = RunConfig(dataset=str(path), text_column="text", **SMALL)
    assert len(data.load_client_samples(config, 1)) == 24


def test_a_save_pretrained_model_folder_loads_as_the_model(tmp_path):
    embedded = RunConfig(**SMALL)
    load_base_model(embedded).save_pretrained(tmp_path / "model")
    data.load_tokenizer(embedded).save_pretrained(tmp_path / "model")
    config = RunConfig(model=str(tmp_path / "model"), **SMALL)
    data.prepare(config)
    model = load_model(config)
    assert model.config.vocab_size == data.EMBEDDED_VOCAB_SIZE
    assert len(data.load_eval_samples(config)) == 8


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(dataset="missing.jsonl"), "dataset file not found: missing.jsonl"),
        (dict(dataset="./no/such/folder"), "dataset './no/such/folder': use a .jsonl"),
        (
            dict(dataset="codeparrot/codeparrot-clean-valid"),
            "cannot load dataset 'codeparrot/codeparrot-clean-valid': it is not in the local",
        ),
        (
            dict(model="facebook/opt-350m"),
            "cannot load model 'facebook/opt-350m': it is not in the local Hugging Face cache",
        ),
        (dict(samples_per_client=10_000_000), "the config needs 20000000"),
    ],
)
def test_unloadable_inputs_fail_with_one_clear_line(overrides, message, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as raised:
        data.prepare(RunConfig(**{**SMALL, **overrides}))
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_missing_text_column_names_the_columns(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"body": "x = 1"}) + "\n")
    with pytest.raises(ConfigError, match=r"no column 'content' \(columns: body\)"):
        data.prepare(RunConfig(dataset=str(path), **SMALL))


def test_an_unreachable_hub_fails_fast_naming_the_host(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(
        ConfigError,
        match=r"not in the local Hugging Face cache and the Hub "
        r"\(127.0.0.1\) cannot be reached",
    ):
        data.prepare(RunConfig(**{**SMALL, "model": "org/not-cached-model"}))


# -- instruction and chat data ------------------------------------------------------------------

INSTRUCTION = dict(data_format="instruction", num_clients=2, samples_per_client=12, eval_samples=6)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def alpaca_rows(count, long_output=(), long_input=()):
    """Alpaca rows, each naming its number; rows in `long_output` have an output, rows in
    `long_input` an input, far longer than 128 tokens."""
    return [
        {
            "instruction": f"Give the number after {n}.",
            "input": "word " * 300 if n in long_input else ("" if n % 2 else f"Count from {n}."),
            "output": "word " * 300 if n in long_output else f"It is {n + 1}.",
        }
        for n in range(count)
    ]


def prepared(config):
    """Every prepared sample of `config`: the eval set's and each client's."""
    return [data.load_eval_samples(config)] + [
        data.load_client_samples(config, k) for k in range(config.num_clients)
    ]


def test_an_alpaca_file_gives_one_sample_per_row_learning_only_its_completion(tmp_path):
    rows = alpaca_rows(30)
    config = RunConfig(
        dataset=write_jsonl(tmp_path / "alpaca.jsonl", rows), loss_on="completion", seq_len=128,
        **INSTRUCTION,
    )  # fmt: skip
    tokenizer = data.load_tokenizer(config)
    seen = set()
    for samples in prepared(config):
        for ids, mask, learned in zip(samples.ids, samples.mask, samples.labels_mask):
            real = int(mask.sum())
            number = int(tokenizer.decode(ids[:real]).split("number after ")[1].split(".")[0])
            prompt, completion = prompts.render_instruction(config, rows[number])
            prompt_tokens = len(tokenizer(prompt)["input_ids"])
            assert mask[:real].all() and not mask[real:].any()  # padding after the sample
            assert not learned[:prompt_tokens].any()  # exactly the prompt is not learned
            assert learned[prompt_tokens:real].all()
            assert not learned[real:].any()  # nor is padding
            assert tokenizer.decode(ids[prompt_tokens:real]) == completion + "</s>"
            seen.add(number)
    assert len(seen) == 6 + 2 * 12  # one sample per row, none twice


def test_loss_on_all_learns_the_prompt_too(tmp_path):
    path = write_jsonl(tmp_path / "alpaca.jsonl", alpaca_rows(30))
    samples = data.load_client_samples(RunConfig(dataset=path, seq_len=128, **INSTRUCTION), 0)
    np.testing.assert_array_equal(samples.labels_mask, samples.mask)


def test_truncation_is_counted_in_the_partition_summary(tmp_path):
    rows = alpaca_rows(30, long_output=range(0, 5), long_input=range(5, 8))
    config = RunConfig(
        dataset=write_jsonl(tmp_path / "alpaca.jsonl", rows), loss_on="completion", seq_len=128,
        **INSTRUCTION,
    )  # fmt: skip
    summary = data.load_partition_summary(config)
    eval_set, *clients = prepared(config)
    for row, samples in zip(summary, clients):
        cut = samples.truncation
        counted = ((cut != WHOLE).sum(), (cut == COMPLETION_CUT).sum())
        assert (row["truncated"], row["completion_cut"]) == counted
    every = np.concatenate([samples.truncation for samples in [eval_set, *clients]])
    assert ((every == TRUNCATED).sum(), (every == COMPLETION_CUT).sum()) == (5, 3)
    for samples in [eval_set, *clients]:
        assert samples.mask[samples.truncation != WHOLE].all()  # cut at seq_len exactly
        # a sample whose completion is cut is kept, but nothing of it is learned
        assert not samples.labels_mask[samples.truncation == COMPLETION_CUT].any()


def test_a_chat_file_renders_through_a_local_models_chat_template(tmp_path):
    local_tokenizer().save_pretrained(tmp_path / "chat-model")
    chats = [[*CONVERSATION[:2], {"role": "assistant", "content": f"Paris {n}"}] for n in range(20)]
    config = RunConfig(
        model=str(tmp_path / "chat-model"),
        dataset=write_jsonl(tmp_path / "chats.jsonl", [{"messages": m} for m in chats]),
        data_format="chat", loss_on="completion", seq_len=96,
        num_clients=2, samples_per_client=8, eval_samples=4,
    )  # fmt: skip
    tokenizer = data.load_tokenizer(config)
    samples = data.load_client_samples(config, 0)
    for ids, mask, learned in zip(samples.ids, samples.mask, samples.labels_mask):
        text = tokenizer.decode(ids[mask == 1])
        prompt = text[: text.index("<|assistant|>\n") + len("<|assistant|>\n")]
        assert prompt == prompts.render_chat(tokenizer, chats[0])[0]
        assert int((mask - learned).sum()) == len(tokenizer(prompt)["input_ids"])
        assert tokenizer.decode(ids[learned == 1]).startswith("Paris ")
        assert tokenizer.decode(ids[learned == 1]).endswith("\n</s>")


@pytest.mark.parametrize("form", ["jsonl", "parquet", "csv", "save_to_disk"])
def test_instruction_columns_are_read_by_name_from_every_dataset_form(form, tmp_path):
    from datasets import Dataset

    table = Dataset.from_list(
        [{"question": f"Q{n}", "context": "", "answer": f"A{n}", "id": n} for n in range(3)]
    )
    path = tmp_path / f"rows.{form}"
    {
        "jsonl": lambda: table.to_json(path),
        "parquet": lambda: table.to_parquet(path),
        "csv": lambda: table.to_csv(path, index=False),
        "save_to_disk": lambda: table.save_to_disk(path),
    }[form]()
    config = RunConfig(
        dataset=str(path), data_format="instruction",
        instruction_column="question", input_column="context", output_column="answer",
    )  # fmt: skip
    documents = data.load_documents(config)
    assert len(documents) == 3
    rendered = prompts.render_instruction(config, documents.examples[1])
    assert rendered == (prompts.ALPACA_WITHOUT_INPUT.format(instruction="Q1"), "A1")


@pytest.mark.parametrize(
    "overrides, says",
    [
        (
            dict(data_format="instruction"),
            "has no column 'output' (columns: instruction, input, response); set output_column",
        ),
        (dict(data_format="chat"), "has no column 'messages' (columns: instruction, input, "),
    ],
)
def test_a_missing_instruction_or_chat_column_is_refused_in_one_line(overrides, says, tmp_path):
    path = write_jsonl(
        tmp_path / "rows.jsonl", [{"instruction": "a", "input": "", "response": "b"}]
    )
    with pytest.raises(ConfigError) as raised:
        data.prepare(RunConfig(dataset=path, **overrides))
    assert says in str(raised.value) and "\n" not in str(raised.value)


def test_a_malformed_row_is_refused_naming_it(tmp_path):
    rows = alpaca_rows(30)
    rows[3]["output"] = None
    config = RunConfig(dataset=write_jsonl(tmp_path / "rows.jsonl", rows), **INSTRUCTION)
    with pytest.raises(ConfigError, match=r"rows.jsonl', row 3: column 'output' is empty$"):
        data.prepare(config)


def test_what_changes_the_samples_changes_the_cache_key():
    path = data.prepared_path
    instruction = RunConfig(model="org/model", dataset="rows.jsonl", data_format="instruction")
    assert path(instruction) != path(replace(instruction, loss_on="completion"))
    assert path(instruction) != path(replace(instruction, prompt_template="{instruction}"))
    assert path(instruction) != path(replace(instruction, output_column="response"))
    assert path(instruction) != path(replace(instruction, data_format="chat"))
    text = RunConfig(model="org/model", dataset="rows.jsonl")
    assert path(text) == path(replace(text, prompt_template="{instruction}", input_column="x"))


def test_editing_a_dataset_file_changes_the_next_runs_samples(tmp_path):
    path = tmp_path / "alpaca.jsonl"
    config = RunConfig(dataset=write_jsonl(path, alpaca_rows(30)), seq_len=128, **INSTRUCTION)
    tokenizer = data.load_tokenizer(config)

    def texts():
        return {tokenizer.decode(ids) for samples in prepared(config) for ids in samples.ids}

    before = texts()
    edited = [{**row, "output": f"Edited: {row['output']}"} for row in alpaca_rows(30)]
    write_jsonl(path, edited)
    after = texts()
    assert not any("Edited:" in text for text in before)
    assert all("Edited:" in text for text in after)
