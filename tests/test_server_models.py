"""`convo-sim serve` through the real `openai` client: one model by id, and `n`."""

from __future__ import annotations

import openai
import pytest

from convo_sim.server import ServerThread


@pytest.mark.timeout(30)
def test_one_model_by_id_and_an_unknown_one_is_a_404() -> None:
    with ServerThread() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0)
        model = client.models.retrieve("calendar-solver")
        assert (model.id, model.object, model.owned_by) == ("calendar-solver", "model", "convo-sim")
        listed = {m.id for m in client.models.list()}
        assert all(client.models.retrieve(name).id == name for name in listed)
        with pytest.raises(openai.NotFoundError, match="'nope/such-model' does not exist"):
            client.models.retrieve("nope/such-model")
        client.close()


@pytest.mark.timeout(30)
def test_more_than_one_choice_is_refused_not_silently_cut_to_one() -> None:
    with ServerThread() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0)
        hello = [{"role": "user", "content": "hello"}]
        one = client.chat.completions.create(model="echo", messages=hello, n=1)
        assert len(one.choices) == 1
        with pytest.raises(openai.BadRequestError, match="'n' must be 1"):
            client.chat.completions.create(model="echo", messages=hello, n=3)
        client.close()


def test_serve_help_describes_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    from convo_sim.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "OpenAI-compatible API" in " ".join(out.split())


async def test_scripted_model_takes_a_list_like_scripted_user() -> None:
    from convo_sim import Message
    from convo_sim._models import ModelSettings
    from convo_sim.testing import ScriptedModel

    hello = [Message(role="user", content="hi")]
    for model in (ScriptedModel(["one", "two"]), ScriptedModel("one", "two")):
        replies = [(await model.complete(hello, ModelSettings())).message.text for _ in range(2)]
        assert replies == ["one", "two"]
        with pytest.raises(IndexError):
            await model.complete(hello, ModelSettings())
