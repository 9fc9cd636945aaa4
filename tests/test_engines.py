"""Engines against a real tiny Qwen2 (built from scratch) and a real local HTTP server.

No mocks: ``HFTextEngine``/``HFScoreEngine`` run the model on CPU, and ``OpenAITextEngine`` talks
HTTP to ``helpers_openai_server`` which serves that same model. vLLM's engines: test_vllm.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers_openai_server import OpenAITestServer
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from actors.engines.base import GenRequest, LMPolicy, PPMScorer
from actors.engines.hf import HFScoreEngine, HFTextEngine
from actors.engines.openai import OpenAIEngineError, OpenAITextEngine, cut_at_stop
from trainers.tiny_model import make_tiny_model, training_texts
from tree.protocols import ScoreRequest, StepRequest
from tree.steps import StepFormat

FMT = StepFormat()
STOPS = FMT.stops
Q = "Tom has 12 apples. Tom buys 3 bags with 7 apples each. How many apples does Tom have now?"
STEP1 = "<code>\n# Step 1: Tom has 12 apples. Start from this amount.\napples = 12\n<end_of_step>"
HOT = 50.0  # near-uniform sampling: an untrained model then hits delimiters and eos often


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two threads on a shared 2-core box spin against each other; one is several times faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("engines") / "policy", seed=0)


@pytest.fixture(scope="module")
def ppm_dir(policy_dir: Path) -> Path:
    """A PPM initialised from the policy (as round 2 does), head seeded, saved like a trained
    one."""
    out = policy_dir.parent / "ppm"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = AutoModelForSequenceClassification.from_pretrained(policy_dir, num_labels=1)
        torch.nn.init.normal_(model.score.weight, std=0.05)  # unsaturated: tanh spreads scores
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(policy_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def engine(policy_dir: Path) -> HFTextEngine:
    return HFTextEngine(policy_dir, max_new_tokens=24)


@pytest.fixture(scope="module")
def scorer(ppm_dir: Path) -> HFScoreEngine:
    return HFScoreEngine(ppm_dir, max_batch_seqs=4)


def _prompt(steps: tuple[str, ...] = ()) -> str:
    return FMT.render(Q, list(steps))


def _check_completion(text: str, tokens: int, max_new: int) -> None:
    """Ends with a stop (kept), or ran out of tokens, or stopped at eos; never runs past a stop."""
    assert cut_at_stop(text, STOPS) == text
    if not any(text.endswith(s) for s in STOPS):
        assert tokens <= max_new and "<|endoftext|>" not in text
    assert 0 < tokens <= max_new


# -- HFTextEngine --------------------------------------------------------------------------------


def test_generate_shapes_and_stops(engine: HFTextEngine) -> None:
    reqs = [GenRequest(_prompt(), 1, 1), GenRequest(_prompt((STEP1,)), 3, 2),
            GenRequest("x = 1\n", 2, 3)]
    out = engine.generate(reqs, STOPS)
    assert [len(c) for c in out] == [1, 3, 2]
    for cands in out:
        for c in cands:
            _check_completion(c.text, c.tokens, engine.max_new_tokens)


def test_delimiters_are_hit_and_kept(policy_dir: Path) -> None:
    hot = HFTextEngine(policy_dir, max_new_tokens=48, temperature=HOT)
    tok = hot.tokenizer
    out = hot.generate([GenRequest(_prompt(), 40, 7)], STOPS)[0]
    ended = [c for c in out if any(c.text.endswith(s) for s in STOPS)]
    assert ended, "an untrained model sampled hot hits a delimiter in 40 x 48 tokens"
    for c in out:
        _check_completion(c.text, c.tokens, 48)
    for c in ended:  # the stop is one token, the last one generated
        ids = tok.encode(c.text, add_special_tokens=False)
        assert tok.convert_ids_to_tokens(ids[-1]) in STOPS


def test_multi_token_and_single_token_stop_strings(policy_dir: Path) -> None:
    # Seeded sampling, not greedy: an untrained model's greedy text can be one token repeated,
    # where "the first occurrence of a stop" is ill-defined at token boundaries.
    greedy = HFTextEngine(policy_dir, max_new_tokens=24, temperature=1.0)
    req = GenRequest(_prompt(), 1, seed=5)
    free = greedy.generate([req], [])[0][0].text
    assert len(free) > 12
    ids = greedy.tokenizer.encode(free, add_special_tokens=False)
    single = greedy.tokenizer.decode(ids[2:3])
    for stop in (free[4:11], single):  # string-matched stop, then a one-token stop
        got = greedy.generate([req], [stop])[0][0]
        assert got.text == free[: free.find(stop) + len(stop)]


def test_batching_is_padding_invariant_greedy(policy_dir: Path) -> None:
    greedy = HFTextEngine(policy_dir, max_new_tokens=16, temperature=0)
    alone = greedy.generate([GenRequest(_prompt(), 1)], STOPS)[0][0]
    longer = _prompt((STEP1, STEP1.replace("12", "13")))
    batched = greedy.generate([GenRequest(longer, 2), GenRequest(_prompt(), 1)], STOPS)
    assert batched[1][0] == alone  # left-padded next to a longer prompt: same tokens
    # n rows of one prompt share one prefill (KV cache copied to each row): same tokens too,
    # also for a one-token prompt whose prefilled columns are all padding.
    shared = greedy.generate([GenRequest(_prompt(), 3), GenRequest("x", 2), GenRequest(longer, 1)],
                             STOPS)
    assert shared[0] == [alone] * 3
    assert shared[1] == greedy.generate([GenRequest("x", 1)], STOPS)[0] * 2


def test_seeded_sampling(engine: HFTextEngine) -> None:
    reqs = [GenRequest(_prompt(), 4, 11), GenRequest(_prompt((STEP1,)), 2, 12)]
    a, b = engine.generate(reqs, STOPS), engine.generate(reqs, STOPS)
    assert a == b
    c = engine.generate([GenRequest(_prompt(), 4, 99), reqs[1]], STOPS)
    assert c[0] != a[0]
    assert len({x.text for x in a[0]}) > 1  # the n samples of one request differ


def test_overlong_prompt_gives_empty_completions(policy_dir: Path) -> None:
    small = HFTextEngine(policy_dir, max_new_tokens=24, max_context=64, max_batch_seqs=2)
    tok = small.tokenizer
    long_prompt = _prompt((STEP1,) * 6)
    near = tok.decode(tok.encode(long_prompt, add_special_tokens=False)[:60])
    room = 64 - len(tok.encode(near, add_special_tokens=False))
    assert 0 < room < 24
    out = small.generate([GenRequest(long_prompt, 3, 1), GenRequest("x = 1\n", 2, 2),
                          GenRequest(near, 2, 3)], STOPS)
    assert out[0] == [out[0][0]] * 3 and out[0][0].text == "" and out[0][0].tokens == 0
    assert len(out[1]) == 2 and all(c.tokens > 0 for c in out[1])
    assert all(0 < c.tokens <= room for c in out[2])  # cut to what fits 64 tokens of context


def test_lm_policy_adapter(engine: HFTextEngine) -> None:
    policy = LMPolicy(engine, FMT)
    out = policy.propose([StepRequest(Q, (), 2, 5), StepRequest(Q, (STEP1,), 3, 6)])
    assert [len(x) for x in out] == [2, 3] and all(isinstance(s, str) for x in out for s in x)
    assert policy.tokens_generated > 0


# -- HFScoreEngine -------------------------------------------------------------------------------


def _texts() -> list[str]:
    full = training_texts(3, seed=3)
    return [FMT.scored_text(Q, [STEP1]), FMT.scored_text(Q, []), full[0].rstrip("\n"),
            full[1].rstrip("\n")[:300], "x", full[2].rstrip("\n")]


def test_score_matches_manual_last_token_computation(scorer: HFScoreEngine, ppm_dir: Path) -> None:
    model = AutoModelForSequenceClassification.from_pretrained(ppm_dir, num_labels=1).eval()
    tok = AutoTokenizer.from_pretrained(ppm_dir)
    texts = _texts()
    got = scorer.score(texts)
    assert all(-1.0 <= s <= 1.0 for s in got)
    assert max(got) - min(got) > 1e-3  # not a constant
    for text, score in zip(texts, got):
        ids = torch.tensor([tok.encode(text, add_special_tokens=False)])
        with torch.inference_mode():
            hidden = model.model(input_ids=ids).last_hidden_state[0, -1]  # unpadded, last token
            want = torch.tanh(hidden @ model.score.weight[0]).item()
        assert score == pytest.approx(want, abs=1e-5)


def test_score_batch_equals_one_at_a_time_and_reload(scorer: HFScoreEngine, ppm_dir: Path) -> None:
    texts = _texts()
    batched = scorer.score(texts)  # max_batch_seqs=4: two padded chunks
    singles = [scorer.score([t])[0] for t in texts]
    assert batched == pytest.approx(singles, abs=1e-5)
    assert HFScoreEngine(ppm_dir).score(texts) == pytest.approx(batched, abs=1e-5)  # thread count may differ
    assert scorer.score([]) == []


def test_sibling_candidates_share_their_prefix_and_score_as_alone(scorer: HFScoreEngine) -> None:
    from actors.engines.hf import prefix_groups

    cands = ["x = 1\n<end_of_step>", "x = 12\n<end_of_step>", "x = 3 * 4\n<end_of_step>"]
    texts = ([FMT.scored_text(Q, [STEP1, c]) for c in cands]
             + [FMT.scored_text("Ann has 3 pens. How many pens does Ann have?", [c]) for c in cands])
    ids = scorer.tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert prefix_groups(ids) == [(0, 3), (3, 3)]
    together = scorer.score(texts)
    assert together == pytest.approx([scorer.score([t])[0] for t in texts], abs=1e-5)
    assert len({round(x, 4) for x in together}) >= 4  # the candidates are told apart


def test_ppm_scorer_adapter(scorer: HFScoreEngine) -> None:
    out = PPMScorer(scorer, FMT).score([ScoreRequest(Q, (STEP1,)), ScoreRequest(Q, (STEP1, STEP1))])
    # Scored in a padded batch of two vs alone: same value up to float reduction order.
    alone = scorer.score([FMT.scored_text(Q, [STEP1])])[0]
    assert len(out) == 2 and out[0] == pytest.approx(alone, abs=1e-5)


# -- OpenAITextEngine against a real HTTP server -------------------------------------------------


@pytest.fixture(scope="module")
def _server(policy_dir: Path):
    with OpenAITestServer(HFTextEngine(policy_dir), model="tiny") as srv:
        yield srv


@pytest.fixture
def server(_server: OpenAITestServer) -> OpenAITestServer:
    st = _server.state
    st.echo_stop, st.send_stop_reason = True, True
    st.injected.clear()
    st.received.clear()
    return _server


def _client(srv: OpenAITestServer, **kw) -> OpenAITextEngine:
    return OpenAITextEngine(srv.base_url, "tiny", api_key="test", backoff_s=0.01, **kw)


def test_openai_shapes_match_the_model(server: OpenAITestServer, policy_dir: Path) -> None:
    reqs = [GenRequest(_prompt(), 1, 1), GenRequest(_prompt((STEP1,)), 3, 2),
            GenRequest("y = 2\n", 2, 3)]
    out = _client(server, max_tokens=16, concurrency=3).generate(reqs, STOPS)
    assert [len(c) for c in out] == [1, 3, 2]
    sent = sorted(server.state.received, key=lambda b: b["seed"])
    assert [b["n"] for b in sent] == [1, 3, 2] and sent[0]["stop"] == STOPS
    assert sent[0]["include_stop_str_in_output"] is True and sent[0]["max_tokens"] == 16
    # One request per HTTP call: the server's engine sees it alone, so it equals a direct call.
    direct = HFTextEngine(policy_dir, max_new_tokens=16)
    for req, got in zip(reqs, out):
        want = direct.generate([req], STOPS)[0]
        assert [c.text for c in got] == [c.text for c in want]
        assert sum(c.tokens for c in got) == sum(c.tokens for c in want)


def test_openai_retries_503_and_429(server: OpenAITestServer) -> None:
    server.state.inject(503, "warming up")
    server.state.inject(429, "slow down")
    client = _client(server, max_tokens=8, concurrency=1)
    out = client.generate([GenRequest(_prompt(), 2, 1)], STOPS)
    assert len(out[0]) == 2 and len(server.state.received) == 3


def test_openai_clear_errors(server: OpenAITestServer) -> None:
    with pytest.raises(OpenAIEngineError, match=r"/v1/completions -> HTTP 404: The model `nope`"):
        OpenAITextEngine(server.base_url, "nope").generate([GenRequest("x", 1)], STOPS)
    server.state.inject(400, "max_tokens is too large")
    with pytest.raises(OpenAIEngineError, match="HTTP 400: max_tokens is too large"):
        _client(server).generate([GenRequest("x", 1)], STOPS)
    assert len(server.state.received) == 2  # a 4xx is not retried
    server.state.inject(503, "down", times=3)
    with pytest.raises(OpenAIEngineError, match=r"127\.0\.0\.1.*after 3 attempts: HTTP 503: down"):
        _client(server, max_retries=2).generate([GenRequest("x", 1)], STOPS)
    dead = OpenAITextEngine("http://127.0.0.1:9/v1", "tiny", max_retries=1, backoff_s=0.01,
                            timeout_s=2)
    with pytest.raises(OpenAIEngineError, match=r"http://127\.0\.0\.1:9/v1/completions failed"):
        dead.generate([GenRequest("x", 1)], STOPS)


def test_openai_restores_stripped_stop_strings(server: OpenAITestServer, policy_dir: Path) -> None:
    reqs = [GenRequest(_prompt(), 24, 5), GenRequest(_prompt((STEP1,)), 24, 6)]
    client = _client(server, max_tokens=40, temperature=HOT)
    ref = client.generate(reqs, STOPS)  # the server keeps stops: the reference texts
    flat = [c.text for cands in ref for c in cands]
    assert any(t.endswith(s) for t in flat for s in STOPS), "hot sampling hits some delimiter"
    server.state.echo_stop = False  # strips them, but says which one (vLLM's stop_reason)
    restored = client.generate(reqs, STOPS)
    assert [[c.text for c in x] for x in restored] == [[c.text for c in x] for x in ref]
    server.state.send_stop_reason = False  # strips them and says nothing (guess)
    guessed = client.generate(reqs, STOPS)
    # Exact per-sample token counts (the client only sees a per-request total) from the model.
    direct = HFTextEngine(policy_dir, max_new_tokens=40, temperature=HOT)
    truth = [c for r in reqs for c in direct.generate([r], STOPS)[0]]
    assert [c.text for c in truth] == flat
    for want, got in zip(truth, (c for cands in guessed for c in cands)):
        hit = next((s for s in STOPS if want.text.endswith(s)), None)
        body = want.text[: -len(hit)] if hit else want.text
        guess = FMT.answer_end if FMT.answer_start in body else FMT.step_end
        if hit or want.tokens < 40:  # finish_reason "stop": a stop string or eos
            assert got.text == body + guess
        else:  # "length": nothing to restore
            assert got.text == want.text
