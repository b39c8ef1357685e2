"""The canned server's simulated prefix cache: what it finds, what it charges, what it shows."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from convo_sim import Message, run_dialogue
from convo_sim._canned import CannedModel, PrefixCache, prompt_tokens
from convo_sim._openai_model import OpenAIChatModel
from convo_sim._server import serve_models
from convo_sim.agents import LLMAssistant
from convo_sim.cli import main
from convo_sim.users import LLMUser


def words(n: int, tag: str = "w") -> list[str]:
    return [f"{tag}{i}" for i in range(n)]


def test_a_repeated_prompt_is_found_up_to_its_last_whole_block() -> None:
    cache = PrefixCache(10_000, block=4)
    prompt = words(10)
    assert cache.serve(prompt, []) == 0
    assert cache.serve(prompt, []) == 8  # two whole blocks; the last 2 tokens never are
    assert (cache.queries, cache.hits) == (20, 8)


def test_the_next_turn_finds_the_prompt_and_the_reply() -> None:
    cache = PrefixCache(10_000, block=4)
    first = words(12)
    reply = words(8, "r")
    cache.serve(first, reply)
    following = [*first, *reply, *words(5, "n")]
    assert cache.serve(following, []) == 20  # everything up to the new message


def test_another_prefix_finds_nothing_even_with_the_same_later_words() -> None:
    cache = PrefixCache(10_000, block=4)
    cache.serve(["a", *words(12)], [])
    assert cache.serve(["b", *words(12)], []) == 0


def test_the_least_recently_used_blocks_go_first() -> None:
    cache = PrefixCache(8, block=4)  # two blocks
    one, two = words(4, "x"), words(4, "y")
    cache.serve(one, [])
    cache.serve(two, [])
    cache.serve(one, [])  # used again: now the newest
    cache.serve(words(4, "z"), [])  # drops `two`
    assert cache.serve(one, []) == 4
    assert cache.serve(two, []) == 0


def test_roles_are_part_of_the_prompt() -> None:
    said = [Message(role="user", content="a b c d e f g h")]
    flipped = [Message(role="assistant", content="a b c d e f g h")]
    cache = PrefixCache(1_000, block=4)
    cache.serve(prompt_tokens(said), [])
    assert cache.serve(prompt_tokens(flipped), []) == 0


@given(
    prompts=st.lists(
        st.lists(st.sampled_from(["a", "b", "c"]), max_size=40), min_size=1, max_size=20
    ),
    block=st.integers(1, 8),
    blocks=st.integers(1, 10),
)
def test_what_is_found_is_a_whole_block_prefix_never_more_than_asked(
    prompts: list[list[str]], block: int, blocks: int
) -> None:
    cache = PrefixCache(block * blocks, block=block)
    asked = found = 0
    for prompt in prompts:
        cached = cache.serve(prompt, [])
        assert 0 <= cached <= len(prompt) and cached % block == 0
        asked += len(prompt)
        found += cached
        # Served just now, so found again at once, as far as the cache holds.
        again = cache.serve(prompt, [])
        assert again == min(len(prompt) // block, blocks) * block
        asked += len(prompt)
        found += again
    assert (cache.queries, cache.hits) == (asked, found)
    assert len(cache._blocks) <= blocks


@pytest.mark.parametrize(("capacity", "block"), [(10, 0), (3, 4)])
def test_bad_cache_sizes_are_refused(capacity: int, block: int) -> None:
    with pytest.raises(ValueError):
        PrefixCache(capacity, block=block)


async def test_the_canned_model_charges_each_uncached_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr("convo_sim._canned.anyio.sleep", sleep)
    model = CannedModel(
        "one two three", latency=0.01, prefix_cache=PrefixCache(1000, block=2), per_token=0.001
    )
    first: Sequence[Message] = [Message(role="user", content="a b c d e")]  # 6 tokens
    await model.reply(first, {})
    reply = Message(role="assistant", content="one two three")  # 4 tokens, cached with it
    await model.reply([*first, reply, Message(role="user", content="f")], {})  # 12 tokens
    assert waits == pytest.approx([0.01 + 6 * 0.001, 0.01 + 2 * 0.001])


async def test_a_dialogue_over_http_hits_the_cache_and_metrics_show_it() -> None:
    model = CannedModel("fine thanks", prefix_cache=PrefixCache(100_000, block=4), per_token=0)
    async with serve_models({"canned": model}) as server:
        async with OpenAIChatModel("canned", base_url=server.base_url) as chat:
            result = await run_dialogue(
                LLMAssistant(chat, system_prompt="You keep a calendar for a busy person today."),
                LLMUser(chat, goal="Book lunch with Ana at noon on Friday."),
                max_turns=4,
                completion=(),
            )
        assert result.error is None and result.turns == 4
        assert model.prefix_cache is not None
        queries, hits = model.prefix_cache.queries, model.prefix_cache.hits
        assert hits / queries > 0.5  # every turn after the first finds its prefix
        url = f"http://127.0.0.1:{server.port}/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 200
            assert response.content_type == "text/plain"
            text = await response.text()
    values = dict(line.split() for line in text.splitlines() if not line.startswith("#"))
    assert int(values["convo_sim_prefix_cache_queries_total"]) == queries
    assert int(values["convo_sim_prefix_cache_hits_total"]) == hits
    assert int(values["convo_sim_requests_total"]) == 8 + 1  # and this one


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--prefill-us-per-token", "10"], "--canned"),
        (["--canned", "--prefill-us-per-token", "-1"], "--prefill-us-per-token"),
        (["--canned", "--prefill-us-per-token", "nan"], "--prefill-us-per-token"),
        (["--canned", "--prefill-us-per-token", "5", "--prefix-cache-tokens", "3"], "cache"),
    ],
)
def test_bad_serve_flags_are_one_line_and_exit_2(
    args: list[str], flag: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["serve", "--port", "0", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag in err
