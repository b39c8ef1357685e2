"""The bundled server's tokenizer, template and vLLM token protocol (convo-sim serve)."""

from __future__ import annotations

from typing import Any

import anyio
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from convo_sim.server import ChatTokenizer, EchoModel, TokenOptions, serve_models

TOKENIZER = ChatTokenizer()
ROLES = st.sampled_from(["system", "user", "assistant", "tool"])
TEXT = st.text(max_size=60)


@given(TEXT)
def test_encode_then_decode_gives_the_text_back(text: str) -> None:
    expected = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    assert TOKENIZER.decode(TOKENIZER.encode(text)) == expected
    assert TOKENIZER.decode(TOKENIZER.spell(text)) == expected
    assert all(0 <= t < TOKENIZER.vocab_size for t in TOKENIZER.encode(text))


@given(st.lists(st.tuples(ROLES, TEXT), min_size=1, max_size=6), TEXT)
def test_a_turns_prompt_and_generation_are_the_template_up_to_its_reply(
    history: list[tuple[str, str]], reply: str
) -> None:
    # The template is built so that prompt + generation spells the next
    # turn's history exactly (exact mode): what makes capture contiguous.
    prompt = TOKENIZER.prompt(history)
    generation = TOKENIZER.generation(reply)
    assert generation[-1] == ChatTokenizer.END
    later = TOKENIZER.prompt([*history, ("assistant", reply), ("user", "next")])
    assert later[: len(prompt) + len(generation)] == prompt + generation


def test_drift_spells_generations_in_a_segmentation_encode_never_makes() -> None:
    drifting = ChatTokenizer(drift=True)
    text = "Added the meeting at 10:30 for you."
    assert drifting.generation(text)[:-1] != drifting.encode(text)
    assert drifting.decode(drifting.generation(text)[:-1]) == text
    assert TOKENIZER.generation(text)[:-1] == TOKENIZER.encode(text)


def test_logprobs_are_deterministic_finite_and_negative() -> None:
    ids = TOKENIZER.encode("Booked lunch with Ana at noon.")
    values = ChatTokenizer.logprobs(ids, 40)
    assert values == ChatTokenizer.logprobs(ids, 40)
    assert len(values) == len(ids)
    assert all(-4.01 <= v < 0 for v in values)


# -- over HTTP, as a vLLM client sees it -------------------------------------------------------

CAPTURE = {
    "logprobs": True,
    "top_logprobs": 0,
    "return_tokens_as_token_ids": True,
    "return_token_ids": True,
}


async def _ask(
    base_url: str, messages: list[dict[str, Any]], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    async with openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0) as client:
        reply = await client.chat.completions.create(
            model="echo", messages=messages, extra_body=CAPTURE if extra is None else extra
        )
    return reply.model_dump()


@pytest.mark.timeout(20)
async def test_chat_completions_carry_vllms_token_fields() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]
    with anyio.fail_after(15):
        async with serve_models({"echo": EchoModel()}) as server:
            data = await _ask(server.base_url, messages)
            plain = await _ask(server.base_url, messages, {"logprobs": True, "top_logprobs": 2})
            bare = await _ask(server.base_url, messages, {})
    prompt = TOKENIZER.prompt([("system", "Be brief."), ("user", "hello")])
    generation = TOKENIZER.generation("hello")
    choice = data["choices"][0]
    assert data["prompt_token_ids"] == prompt
    assert choice["token_ids"] == generation
    content = choice["logprobs"]["content"]
    assert [c["token"] for c in content] == [f"token_id:{t}" for t in generation]
    assert [c["logprob"] for c in content] == ChatTokenizer.logprobs(generation, len(prompt))
    assert data["usage"]["prompt_tokens"] == len(prompt)
    assert data["usage"]["completion_tokens"] == len(generation)
    # Logprobs alone: token texts, alternatives, and no id fields.
    entries = plain["choices"][0]["logprobs"]["content"]
    assert "".join(e["token"] for e in entries[:-1]) == "hello"
    assert all(len(e["top_logprobs"]) == 2 for e in entries)
    assert plain.get("prompt_token_ids") is None
    assert bare["choices"][0]["logprobs"] is None


@pytest.mark.timeout(20)
@pytest.mark.parametrize("drift", [False, True])
@pytest.mark.parametrize("honour", [False, True])
async def test_passed_back_ids_are_honoured_and_drift_shows_without_them(
    drift: bool, honour: bool
) -> None:
    history = [{"role": "user", "content": "Add the team meeting at 10:30 please."}]
    with anyio.fail_after(15):
        async with serve_models(
            {"echo": EchoModel()}, tokens=TokenOptions(drift=drift, honour_token_ids=honour)
        ) as server:
            first = await _ask(server.base_url, history)
            reply = first["choices"][0]
            carried = {
                "role": "assistant",
                "content": reply["message"]["content"],
                "prompt_token_ids": first["prompt_token_ids"],
                "generation_token_ids": reply["token_ids"],
                "generation_log_probs": [c["logprob"] for c in reply["logprobs"]["content"]],
            }
            second = await _ask(server.base_url, [*history, carried, history[0]])
    before = first["prompt_token_ids"] + reply["token_ids"]
    extends = second["prompt_token_ids"][: len(before)] == before
    # Only drift with the ids ignored (stock vLLM on a sampled model) breaks it.
    assert extends is (honour or not drift)


@pytest.mark.timeout(20)
async def test_bad_token_requests_are_400s() -> None:
    bad_ids = {"role": "assistant", "content": "x", "prompt_token_ids": [1, -5]}
    bad_ids["generation_token_ids"] = [2]
    with anyio.fail_after(15):
        async with (
            serve_models({"echo": EchoModel()}) as server,
            openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client,
        ):
            with pytest.raises(openai.BadRequestError) as streamed:
                await client.chat.completions.create(
                    model="echo",
                    messages=[{"role": "user", "content": "hi"}],
                    stream=True,
                    extra_body=CAPTURE,
                )
            with pytest.raises(openai.BadRequestError) as garbled:
                await client.chat.completions.create(
                    model="echo",
                    messages=[{"role": "user", "content": "hi"}, bad_ids],  # type: ignore[list-item]
                    extra_body=CAPTURE,
                )
    assert "non-streamed" in str(streamed.value)
    assert "prompt_token_ids" in str(garbled.value)


@pytest.mark.timeout(20)
async def test_tokenize_and_detokenize_answer_as_vllms() -> None:
    messages = [{"role": "user", "content": "hello there"}]
    with anyio.fail_after(15):
        async with serve_models({"echo": EchoModel()}) as server:
            root = server.base_url.removesuffix("/v1")
            async with openai.AsyncOpenAI(base_url=root, api_key="x", max_retries=0) as client:
                chat = await client.post(
                    "/tokenize",
                    body={"model": "echo", "messages": messages},
                    cast_to=dict[str, Any],
                )
                text = await client.post(
                    "/tokenize",
                    body={"prompt": "hello there", "return_token_strs": True},
                    cast_to=dict[str, Any],
                )
                back = await client.post(
                    "/detokenize", body={"tokens": text["tokens"]}, cast_to=dict[str, Any]
                )
                with pytest.raises(openai.BadRequestError):
                    await client.post("/tokenize", body={"prompt": 5}, cast_to=dict[str, Any])
    assert chat["tokens"] == TOKENIZER.prompt([("user", "hello there")])
    assert chat["count"] == len(chat["tokens"]) and chat["max_model_len"] > 0
    assert text["tokens"] == TOKENIZER.encode("hello there")
    assert "".join(text["token_strs"]) == "hello there"
    assert back == {"prompt": "hello there"}


def _greedy(tokenizer: ChatTokenizer, text: str) -> list[int]:
    """The longest-fragment-first rule, spelled out slowly: the oracle for `encode`."""
    merges = tokenizer._merge_ids
    longest = max(map(len, merges))
    out: list[int] = []
    i = 0
    while i < len(text):
        for width in range(min(longest, len(text) - i), 1, -1):
            if text[i : i + width] in merges:
                out.append(merges[text[i : i + width]])
                i += width
                break
        else:
            out.extend(text[i].encode("utf-8", "surrogatepass"))
            i += 1
    return out


@given(
    st.text(alphabet=st.sampled_from(list("the meeting at 10:30, and you:'\"{}\né")), max_size=80)
)
def test_encode_takes_the_longest_fragment_at_each_point(text: str) -> None:
    assert TOKENIZER.encode(text) == _greedy(TOKENIZER, text)
