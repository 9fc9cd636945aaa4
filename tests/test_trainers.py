"""Policy SFT and PPM trainers on CPU with the tiny model: labels, pairs, tanh, checkpoints, LoRA,
and real Ray Train jobs on shards from a real generation run."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
import torch

ray = pytest.importorskip("ray")

from actors.engines.hf import HFScoreEngine, ppm_logits  # noqa: E402
from rstar.config import (GenerateConfig, PolicyTrainConfig, PPMTrainConfig, TrainConfig,  # noqa: E402
                          WorkerConfig)
from rstar.generate import run_generate  # noqa: E402
from test_extract import build  # noqa: E402
from trainers.ppm import group_loss_and_hits, pair_dataset, pair_groups, train_ppm  # noqa: E402
from trainers.sft import encode_example, train_policy  # noqa: E402
from trainers.tiny_model import make_tiny_model  # noqa: E402
from tree.mcts import MCTSConfig  # noqa: E402
from tree.steps import StepFormat  # noqa: E402

FMT = StepFormat()


@pytest.fixture(scope="module")
def round_dir(tmp_path_factory):
    """A round: tiny base model + shards from a real (scripted-teacher) generation run."""
    os.environ["RAY_AUTH_MODE"] = "disabled"
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    d = tmp_path_factory.mktemp("round")
    make_tiny_model(d / "base", n_texts=300)
    cfg = GenerateConfig(problems=40, seed=3, mcts=MCTSConfig(rollouts=8, candidates=4),
                         workers=WorkerConfig(flush_s=0.5))
    assert run_generate(cfg, d, show_progress=False)["missing"] == 0
    yield d
    ray.shutdown()


@pytest.fixture(scope="module")
def tok(round_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(round_dir / "base", padding_side="left")


def test_sft_labels_cover_only_what_the_policy_writes(tok):
    steps = ["<code>\n# Step 1: Tom has 3 apples.\napples = 3\n<end_of_step>",
             "# Step 2: Print the final answer.\nprint(apples)\n<end_of_code>\n<output>3<end_of_output>",
             "<answer>Tom has \\boxed{3} apples now.<end_of_answer>"]
    ids, labels = encode_example(tok, FMT, "Tom has 3 apples. How many?", steps)
    assert len(ids) == len(labels) and ids[-1] == labels[-1] == tok.eos_token_id
    prompt = tok(FMT.prompt("Tom has 3 apples. How many?") + "\n",
                 add_special_tokens=False)["input_ids"]
    assert labels[: len(prompt)] == [-100] * len(prompt)  # the prompt is never learned
    learned = tok.decode([t for t, lab in zip(ids, labels) if lab != -100])
    expected = (steps[0] + "# Step 2: Print the final answer.\nprint(apples)\n<end_of_code>"
                + steps[2] + tok.eos_token)
    assert learned == expected  # no tool output, no inter-step newlines
    masked = tok.decode([t for t, lab in zip(ids, labels) if lab == -100])
    assert "<output>3<end_of_output>" in masked


def test_pair_groups_on_the_hand_built_tree():
    groups = {(tuple(g["prefix"]), len(g["pos"][0])): g for g in pair_groups(build())}
    root = groups[((), 1)]
    assert root["pos"] == [["a"], ["d"]] and root["neg"] == [["b"], ["c"]]
    assert sorted(map(tuple, root["combos"])) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    under_d = groups[(("d",), 1)]
    assert under_d["pos"] == [["d1"]] and under_d["neg"] == [["d2"]]
    final = next(g for (prefix, n), g in groups.items() if prefix == () and n > 1)
    assert final["pos"] == [["a", "a1"], ["d", "d1", "d1a"]]
    assert final["neg"] == [["b", "b1"], ["d", "d2", "d2a"]] and len(final["combos"]) == 4
    assert sum(len(g["combos"]) for g in groups.values()) == 9


def test_tanh_in_training_and_scoring_and_bt_loss(round_dir, tok):
    engine = HFScoreEngine(round_dir / "base")  # a fresh head: arbitrary but fixed scores
    texts = [FMT.scored_text("Q?", ["<code>\nx = 1\n<end_of_step>"]),
             FMT.scored_text("Q?", ["<code>\nx = 2\n<end_of_step>", "print(x)\n<end_of_code>"])]
    served = engine.score(texts)
    g = {"pos_texts": [texts[0]], "neg_texts": [texts[1]], "combos": [[0, 0]]}
    with torch.no_grad():
        loss, hits, n = group_loss_and_hits(engine.model, tok, [g], "cpu")
    r_pos, r_neg = served
    assert all(-1 < s < 1 for s in served)
    # The trainer's loss is Bradley-Terry on exactly the served (tanh) scores.
    expected = -torch.nn.functional.logsigmoid(torch.tensor(r_pos - r_neg))
    assert float(loss) == pytest.approx(float(expected), abs=1e-5)
    assert (hits, n) == (int(r_pos > r_neg), 1)
    enc = tok(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    raw = ppm_logits(engine.model, enc["input_ids"], enc["attention_mask"])
    assert torch.allclose(torch.tanh(raw), torch.tensor(served), atol=1e-5)
    # The logit penalty adds exactly l2 * mean(raw^2) and leaves the ordering alone.
    with torch.no_grad():
        pen, hits2, _ = group_loss_and_hits(engine.model, tok, [g], "cpu", logit_l2=0.5)
    assert float(pen) == pytest.approx(float(loss) + 0.5 * float((raw ** 2).mean()), abs=1e-5)
    assert hits2 == hits


def test_shared_prefix_scoring_equals_scoring_each_text(round_dir, tok):
    # The trainer runs a position's common prefix once; every text must still get the score
    # inference gives it alone, whatever the groups' prefix and text lengths.
    from trainers.ppm import group_logits

    engine = HFScoreEngine(round_dir / "base")
    q = "Tom has 5 apples. He buys 3 bags with 4 apples each. How many apples does Tom have?"
    s1, s2 = "<code>\napples = 5\n<end_of_step>", "apples = apples + 3 * 4\n<end_of_step>"
    groups = [
        [FMT.scored_text(q, [s1]), FMT.scored_text(q, ["<code>\napples = 6\n<end_of_step>"]),
         FMT.scored_text(q, ["<code>\napples = 5 *\n<end_of_step>"])],
        [FMT.scored_text(q, [s1, s2]), FMT.scored_text(q, [s1, "apples = apples - 3\n<end_of_step>"])],
        [FMT.scored_text("Q?", ["x = 1\n<end_of_step>"]), FMT.scored_text("Q?", ["x = 1\n<end_of_step>"]),
         FMT.scored_text("Q?", ["x = 1\n<end_of_step>", "print(x)\n<end_of_code>"])],
    ]
    with torch.no_grad():
        shared = group_logits(engine.model, tok, groups, "cpu")
        alone = [ppm_logits(engine.model, **{k: v for k, v in tok([x], add_special_tokens=False,
                                                                  return_tensors="pt").items()
                                             if k in ("input_ids", "attention_mask")})
                 for g in groups for x in g]
    assert torch.allclose(shared, torch.cat(alone), atol=1e-5)
    assert len(set(torch.cat(alone).round(decimals=4).tolist())) >= 6  # the texts differ


def test_lora_merge_matches_unmerged(round_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(round_dir / "base")
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                  init_lora_weights=False))
    x = torch.randint(1, 100, (2, 16))
    with torch.no_grad():
        before = peft_model(input_ids=x).logits
        merged = peft_model.merge_and_unload()
        after = merged(input_ids=x).logits
    assert not torch.allclose(before, AutoModelForCausalLM.from_pretrained(
        round_dir / "base")(input_ids=x).logits, atol=1e-4)  # the adapters do something
    assert torch.allclose(before, after, atol=1e-4)


def test_policy_sft_on_two_ray_train_workers(round_dir, monkeypatch, capsys):
    # Relative paths, as a user types them: Ray Train workers run in a directory of their own,
    # so the job must resolve them first (else the base model is looked up on the hub).
    monkeypatch.chdir(round_dir.parent)
    cfg = PolicyTrainConfig(
        base_model=f"{round_dir.name}/base", eval_problems=8, min_steps=0,
        train=TrainConfig(epochs=1, num_workers=2, cpus_per_worker=1, batch_size=16,
                          micro_batch_size=8, log_every=1))
    m = train_policy(cfg, round_dir.name, out_dir=f"{round_dir.name}/policy-2w",
                     show_progress=True)
    assert m["steps"] >= 1 and m["examples"] > 0 and 0 <= m["greedy_acc"] <= 1
    # Ray runs with log_to_driver=False, yet the driver's bar followed rank 0 to the last step.
    bar = [x for x in capsys.readouterr().err.split("\r") if x.startswith("policy-sft")][-1]
    assert f"{m['steps']}/{m['steps']}" in bar and "tok_s=" in bar
    saved = json.loads((round_dir / "policy-2w" / "train_metrics.json").read_text())
    assert saved["greedy_acc"] == m["greedy_acc"] and saved["train_tokens_per_s"] > 0


def test_lora_sft_then_ppm_checkpoint_reloads_and_scores_identically(round_dir):
    pcfg = PolicyTrainConfig(base_model=str(round_dir / "base"), eval_problems=0, min_steps=0,
                             train=TrainConfig(epochs=2, lora=True, lora_r=4))
    train_policy(pcfg, round_dir)
    assert not (round_dir / "policy" / "adapter_config.json").exists()  # merged at save
    cfg = PPMTrainConfig(score="head", holdout_frac=0.2, min_steps=0,
                         train=TrainConfig(epochs=2, lr=1e-3))
    m = train_ppm(cfg, round_dir)
    assert m["heldout_pairs"] > 0 and 0 <= m["pair_acc"] <= 1 and m["positions"] > 0
    saved = json.loads((round_dir / "ppm" / "train_metrics.json").read_text())
    assert saved["pair_acc"] == m["pair_acc"]
    texts = [FMT.scored_text("Tom has 3 apples. How many?", ["<code>\nx = 3\n<end_of_step>"])]
    a, b = HFScoreEngine(round_dir / "ppm"), HFScoreEngine(round_dir / "ppm")
    assert a.score(texts) == b.score(texts)
    assert a.model.config.num_labels == 1 and a.model.config.pad_token_id is not None


def test_likelihood_ppm_scores_what_its_lm_says_in_training_and_serving(round_dir, tmp_path):
    """The likelihood PPM's checkpoint is its LM plus ppm.json; the trainer's score, the hf
    engine's and an independent token-by-token computation agree."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from actors.engines.factory import make_scorer
    from actors.engines.likelihood import LikelihoodScorer, read_meta
    from rstar.config import EngineConfig
    from trainers.ppm import LikelihoodPPM, raw_scores
    from tree.protocols import ScoreRequest

    d = tmp_path / "r"
    d.mkdir()
    (d / "shards").symlink_to(round_dir / "shards")
    cfg = PPMTrainConfig(init_model=str(round_dir / "base"), holdout_frac=0.2, min_steps=0,
                         train=TrainConfig(epochs=1, lr=1e-3))
    m = train_ppm(cfg, d)
    meta = read_meta(d / "ppm")
    assert meta["score"] == "likelihood" and m["beta"] == meta["beta"] and m["heldout_pairs"] > 0
    assert meta["beta"] != 1.0   # trained with the LM
    scorer = make_scorer(EngineConfig(kind="hf", model=str(d / "ppm")), FMT)
    assert isinstance(scorer, LikelihoodScorer)
    q = "(1) Tom has 3 apples. (2) Tom buys 4 more apples. How many apples does Tom have now?"
    steps = ["<code>\n# Step 1: (1) Tom has 3 apples.\napples = 3\n<end_of_step>",
             "# Step 2: (2) Tom buys 4 more apples.\napples = apples + 4\n<end_of_step>",
             "# Step 3: Print the final answer.\nprint(apples)\n<end_of_code>\n"
             "<output>7<end_of_output>"]
    reqs = [ScoreRequest(q, tuple(steps[:k])) for k in (1, 2, 3)]
    served = scorer.score(reqs)
    # Independently: each piece tokenised alone, one unpadded forward pass per text, the mean
    # log-probability of the tokens the policy wrote (not the prompt, not the output block).
    tok = AutoTokenizer.from_pretrained(d / "ppm")
    lm = AutoModelForCausalLM.from_pretrained(d / "ppm").eval()
    direct = []
    for r in reqs:
        ids, own = [], []
        for text, mine in FMT.pieces(r.question, r.steps):
            piece = tok(text, add_special_tokens=False)["input_ids"]
            ids += piece
            own += [mine] * len(piece)
        with torch.no_grad():
            lp = torch.log_softmax(lm(torch.tensor([ids])).logits[0].float(), -1)
        vals = [lp[t - 1, ids[t]].item() for t in range(1, len(ids)) if own[t]]
        assert "<output>7" not in tok.decode([i for i, o in zip(ids, own) if o])
        direct.append(float(torch.tanh(torch.tensor(meta["beta"] * sum(vals) / len(vals)
                                                    + meta["bias"]))))
    assert served == pytest.approx(direct, abs=1e-5)
    model = LikelihoodPPM(lm, meta["beta"], meta["bias"])
    with torch.no_grad():
        trained = torch.tanh(raw_scores(model, tok, [[(q, list(r.steps)) for r in reqs]], "cpu",
                                        FMT)).tolist()
    assert trained == pytest.approx(served, abs=1e-5)


def test_ppm_replay_fills_a_small_round_and_min_steps_raises_epochs(round_dir, tmp_path):
    d = tmp_path / "round-2"
    gen = GenerateConfig(problems=12, seed=11, mcts=MCTSConfig(rollouts=8, candidates=4),
                         workers=WorkerConfig(flush_s=0.5))
    assert run_generate(gen, d, show_progress=False)["missing"] == 0
    from ray.data.expressions import col

    own = pair_dataset(str(d / "shards"), 2, 0.2, FMT).filter(expr=~col("heldout")).count()
    pool = pair_dataset(str(round_dir / "shards"), 2, 0.2, FMT).filter(
        expr=~col("heldout")).count()
    assert 0 < own and own + 20 < pool
    cfg = PPMTrainConfig(init_model=str(round_dir / "base"), holdout_frac=0.2,
                         max_positions=own + 20, min_steps=10,
                         train=TrainConfig(epochs=1, batch_size=16, micro_batch_size=16))
    m = train_ppm(cfg, d, replay_dirs=[str(round_dir / "shards")])
    # All of this round's positions, topped up with a sample of the earlier round's.
    assert m["positions"] - m["replayed_positions"] == own
    assert 0 < m["replayed_positions"] < pool
    assert m["epochs"] == round(10 * 16 / m["positions"]) > 1 and m["steps"] >= 6
    assert m["heldout_pairs_step"] + m["heldout_pairs_final"] == m["heldout_pairs"] > 0
    assert 0 <= m["pair_acc_step"] <= 1 and 0 <= m["pair_acc_final"] <= 1


def test_missing_checkpoint_is_a_clear_error(round_dir, tmp_path):
    cfg = dataclasses.replace(PPMTrainConfig(), init_model=str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="nope"):
        train_ppm(cfg, round_dir)


def test_replay_mixes_earlier_rounds_and_keeps_their_trees_apart(round_dir, tmp_path):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from rstar import shards
    from trainers.sft import sft_dataset

    # An "earlier round" that searched the very same problems: same ids, round 0.
    table = shards.read_table(round_dir / "shards")
    prev = tmp_path / "round-0" / "shards"
    prev.mkdir(parents=True)
    table = table.set_column(table.schema.get_field_index("round"), "round",
                             pc.multiply(table["round"], 0))
    pq.write_table(table, prev / "part-0.parquet")
    own = sft_dataset(str(round_dir / "shards"), 2).count()
    assert own > 0 and sft_dataset([str(round_dir / "shards"), str(prev)], 2).count() == 2 * own
    # SFT leaves out the problems the PPM holds out (its held-out pairs must be unseen by both).
    from trainers.ppm import is_heldout

    kept = sft_dataset(str(round_dir / "shards"), 2, 0.2).take_all()
    assert kept and not any(is_heldout(r["problem_id"], 0.2) for r in kept)
    assert {r["problem_id"] for r in kept} < {r["problem_id"] for r in sft_dataset(
        str(round_dir / "shards"), 2).take_all()}
    own = sft_dataset(str(round_dir / "shards"), 2, PolicyTrainConfig().holdout_frac).count()

    cfg = PolicyTrainConfig(base_model=str(round_dir / "base"), eval_problems=0, replay_ratio=0.5,
                            min_steps=4,
                            train=TrainConfig(epochs=1, batch_size=16, micro_batch_size=16))
    m = train_policy(cfg, round_dir, out_dir=str(tmp_path / "policy"), replay_dirs=[str(prev)])
    assert 0 < m["replayed_examples"] <= own and m["examples"] == own + m["replayed_examples"]
    # min_steps raises the epochs of a small round: about 4 steps of 16 examples.
    assert m["epochs"] == max(1, round(4 * 16 / m["examples"]))
    # -1: every earlier example (what rstar evolve's rounds do).
    import dataclasses

    m = train_policy(dataclasses.replace(cfg, replay_ratio=-1.0), round_dir,
                     out_dir=str(tmp_path / "policy-all"), replay_dirs=[str(prev)])
    assert m["replayed_examples"] == own and m["examples"] == 2 * own


def test_epochs_of_is_one_run_per_seed_whatever_order_rows_arrive_in():
    from trainers.common import epochs_of

    class Rows:  # the one method epochs_of uses on a cached Ray Data shard
        def __init__(self, rows):
            self.rows = rows

        def iter_rows(self):
            return iter(self.rows)

    rows = [{"ids": [i % 7, i], "labels": [i]} for i in range(50)]

    def run(order, seed=0):
        return [b for _, batches in epochs_of(Rows(order), 8, 2, True, seed,
                                              sort_key=lambda r: r["ids"][0] % 3,
                                              order_key=lambda r: r["ids"]) for b in batches]

    shuffled = rows[::-1][25:] + rows[::-1][:25]
    assert run(rows) == run(shuffled)
    assert run(rows) != run(rows, seed=1)
    assert sorted(r["labels"][0] for b in run(shuffled) for r in b) == sorted([*range(50)] * 2)


def test_curriculum_runs_the_first_epoch_shortest_first_then_shuffles():
    from trainers.common import epochs_of

    class Rows:
        def iter_rows(self):
            return iter([{"ids": list(range(1 + (i * 37) % 40))} for i in range(40)])

    def lengths(short_first):
        return [[max(len(r["ids"]) for r in b) for b in batches] for _, batches in epochs_of(
            Rows(), 4, 2, True, 0, sort_key=lambda r: len(r["ids"]),
            order_key=lambda r: r["ids"], short_first=short_first)]

    first, second = lengths(True)
    assert first == sorted(first) and second != sorted(second)
    assert sorted(first) == sorted(second)
    plain = lengths(False)
    assert plain[0] != sorted(plain[0]) and plain[1] == second   # only epoch 1 changes
