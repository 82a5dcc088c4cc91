"""The phases of `graftlm demo`, each resumable: its results go to ``state.json`` when it ends.

setup → svae (train the SentenceVAE) → svae_eval (held-out reconstruction) → sllm (graft + train)
→ generate (stream a few sentences) → measure (closing table) → report.

Design choices (see docs/demo.md for the why): the SentenceVAE has the backbone's width and heads,
its token embeddings (and tied output head) are the backbone's own embedding matrix, kept frozen;
the SentenceLLM trains LoRA adapters in a frozen backbone plus the VAE's layers and the
termination head.
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable

import torch
from peft import LoraConfig
from tqdm.auto import tqdm

import graftlm
from graftlm.demo.budget import (
    MEANINGFUL_STEPS,
    PhaseClock,
    busy_warning,
    share,
    smallest_meaningful_minutes,
    time_limit,
)
from graftlm.demo.inputs import (
    DemoSettings,
    load_backbone,
    load_documents,
    split_documents,
)
from graftlm.demo.measure import measure_all
from graftlm.demo.report import (
    default_prompt,
    merge_svae_evals,
    reconstruction_summary,
    write_report,
)
from graftlm.demo.run_folder import PHASES, RunFolder
from graftlm.demo.train import (
    cycle_batches,
    measure_step_seconds,
    phase_config,
    plan_steps,
    resolve_precision,
    run_phase,
)
from graftlm.evaluation.speed import shared_copy
from graftlm.segmenter import RegexSegmenter
from graftlm.sllm import graft
from graftlm.training.batching import ExampleStream, TrainBatches, train_loader
from graftlm.training.evaluate import evaluate_svae
from graftlm.training.models import special_ids, vae_config
from graftlm.training.plots import plot_run
from graftlm.training.recipes import TrainConfig
from graftlm.vae import SentenceVAE
from graftlm.vae.shared_weights import save_vae

TAIL_SECONDS = 6.0  # of a training phase's share, kept for saving the model and plotting its curve
LORA_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "out_proj")


def freeze_embeddings(vae: torch.nn.Module) -> None:
    for part in (vae.encoder, vae.decoder):
        part.embedding.embed.weight.requires_grad_(False)


def vae_heads(hidden: int, heads: int) -> int:
    """The backbone's head count if it divides ``hidden`` into even head dims (RoPE), else the
    nearest smaller one that does."""
    for h in range(min(heads, hidden // 2), 0, -1):
        if hidden % h == 0 and (hidden // h) % 2 == 0:
            return h
    raise ValueError(f"no head count gives an even head dim for hidden size {hidden}")


def lora_targets(model: torch.nn.Module) -> list[str]:
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    found = sorted(names & set(LORA_NAMES))
    return found or sorted(names - {"lm_head"})


class DemoSession:
    """One invocation of ``graftlm demo`` (fresh or resumed) on a run folder."""

    def __init__(self, run: RunFolder, settings: DemoSettings, log: Callable[[str], None] = print,
                 started: float | None = None) -> None:
        self.run, self.s, self.log = run, settings, log
        self.t0 = time.perf_counter() if started is None else started  # the command's start counts too
        self.elapsed_before = float(run.state.get("elapsed", 0.0))
        run.state["sessions"] = int(run.state.get("sessions", 0)) + 1
        self.precision = resolve_precision(settings.precision)
        self._backbone: tuple[Any, Any, str] | None = None
        self.sllm: Any = None
        self.allowance = float("inf")  # seconds of the current phase (set by begin_phase)
        self.deadline = float("inf")  # time.monotonic() at which the current phase must end

    def begin_phase(self, phase: str) -> float:
        """Give ``phase`` its share of the time left (see graftlm.demo.budget) and set its deadline."""
        remaining = self.s.minutes * 60.0 - self.elapsed()
        left = [p for p in PHASES if p != "setup" and (p == phase or not self.run.done(p))]
        self.allowance = share(phase, remaining, left) if phase != "setup" else float("inf")
        self.deadline = time.monotonic() + self.allowance
        return self.allowance

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    # -- shared pieces ----------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t0

    def save(self, phase: str, *, done: bool, **info: Any) -> None:
        self.run.state["elapsed"] = round(self.elapsed(), 2)
        self.run.update(phase, done=done, **info)

    def backbone(self) -> tuple[Any, Any, str]:
        if self._backbone is None:
            t = time.perf_counter()
            self.log(f"loading the backbone ({self.s.model}) …")
            self._backbone = load_backbone(self.s.model)
            self.run.state.setdefault("load_seconds", []).append(round(time.perf_counter() - t, 2))
        return self._backbone

    def examples(self, kind: str) -> Any:
        return ExampleStream(kind, self.backbone()[1], max_tokens=self.s.max_tokens, max_sentences=self.s.max_sentences)

    def pad_id(self) -> int:
        return special_ids(self.backbone()[1])[0]

    def batches(self, kind: str, batch_size: int) -> Callable[[int, int, int], Any]:
        train, _ = self.run.read_split()
        stream, pad = self.examples(kind), self.pad_id()

        def make(start: int):
            ds = TrainBatches(train, stream, batch_size=batch_size, pad_id=pad, heldout_fraction=0.0,
                              seed=self.s.seed, shuffle_buffer=256, bucket_pool=8 if kind == "svae" else 4,
                              start=start)
            return iter(train_loader(ds))
        return cycle_batches(make)

    # -- phases -----------------------------------------------------------------------------------
    def setup(self) -> None:
        docs, corpus = load_documents(self.s)
        train, heldout = split_documents(docs, self.s.heldout_fraction, self.s.seed)
        _, tokenizer, label = self.backbone()
        svae, sllm = self.examples("svae"), self.examples("sllm")
        n_seg = n_tok = n_win = 0
        for doc in tqdm(train, desc="preparing data", unit="paragraph", dynamic_ncols=True):
            segs = svae.examples(doc)
            n_seg, n_tok = n_seg + len(segs), n_tok + sum(map(len, segs))
            n_win += len(sllm.examples(doc))
        if n_seg == 0:
            raise ValueError(f"the training text ({corpus}) has no usable segments after tokenization")
        if n_win == 0:
            raise ValueError(f"no training paragraph of {corpus} has 2 or more sentences; the SentenceLLM learns "
                             "to predict the next sentence, so give it paragraphs of several sentences")
        held = [seg for doc in heldout for seg in svae.examples(doc)]
        mean_len = sum(map(len, held)) / len(held) if held else n_tok / n_seg
        self.run.write_split(train, heldout)
        if hasattr(tokenizer, "save_pretrained"):
            tokenizer.save_pretrained(str(self.run.tokenizer_dir))
        self.run.state["budget"] = {"total_s": self.s.minutes * 60.0, "after_setup_s": round(
            self.s.minutes * 60.0 - self.elapsed(), 1)}
        self.save("setup", done=True, corpus=corpus, backbone=label, train_paragraphs=len(train),
                  heldout_paragraphs=len(heldout), train_segments=n_seg, train_tokens=n_tok, train_windows=n_win,
                  heldout_segments=len(held), mean_segment_tokens=round(mean_len, 3), precision=self.precision)

    def _train(self, phase: str, model: torch.nn.Module, kind: str, batch_size: int, lr: float,
               cap: int | None) -> dict[str, Any]:
        """Plan (or re-use the plan of an interrupted try), train, return the phase record."""
        record = {k: v for k, v in self.run.result(phase).items() if k not in ("done", "allowance_s")}
        make = self.batches(kind, batch_size)
        name = "SentenceVAE" if kind == "svae" else "SentenceLLM"
        if "planned_steps" not in record or not record.get("interrupted"):
            step_s = measure_step_seconds(model, next(make(0, 0, 1)), self.precision)
            fitting = plan_steps(self.time_left() - TAIL_SECONDS, step_s, None)
            record.update(planned_steps=min(fitting, cap) if cap is not None else fitting,
                          step_seconds_estimate=round(step_s, 3))
            if fitting < MEANINGFUL_STEPS[phase] and (cap is None or cap > fitting):
                need = smallest_meaningful_minutes(phase, step_s=step_s, minutes=self.s.minutes, fitting_steps=fitting)
                steps = f"{fitting} {name} step{'s' if fitting != 1 else ''}"
                self.log(f"warning: --minutes {self.s.minutes:g} leaves time for only {steps} "
                         f"({step_s:.2f} s each on this machine); {MEANINGFUL_STEPS[phase]} or more are needed to "
                         f"learn something: about --minutes {need:.1f}")
                record["too_few_steps"] = True
        planned = int(record["planned_steps"])
        cfg = phase_config(name, kind=kind, steps=planned, batch_size=batch_size, lr=lr, seed=self.s.seed,
                           run_dir=self.run.path / phase, precision=self.precision,
                           backbone=self.s.model if kind == "sllm" else None)
        seconds = max(self.time_left() - TAIL_SECONDS, 0.0)
        self.log(f"{name}: {planned} steps of {batch_size} {'segments' if kind == 'svae' else 'paragraphs'} planned "
                 f"for {seconds:.0f} s{f' (capped at {cap})' if cap is not None else ''}; re-planned as it goes")
        t = time.perf_counter()
        try:
            res = run_phase(model, cfg, make, seconds=seconds, resume=bool(record.get("interrupted")), cap=cap)
        except KeyboardInterrupt as err:
            record["planned_steps"] = int(getattr(err, "planned_steps", planned))
            spent = float(record.get("spent", 0.0)) + time.perf_counter() - t
            self.save(phase, done=False, **{**record, "interrupted": True, "spent": round(spent, 2)})
            raise
        how = (f"ended on time: its {seconds:.0f} s were up after {res.steps} of {res.planned_steps} planned steps"
               if res.stopped_by_time else f"ended on steps: all {res.steps} planned steps in "
               f"{time.perf_counter() - t:.0f} s")
        self.log(f"{name} {how}; last loss {res.last_loss:.3f}")
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return {**record, "steps": res.steps, "seconds": round(float(record.get("spent", 0.0))
                                                               + time.perf_counter() - t, 1),
                "planned_steps": res.planned_steps, "replans": res.replans,
                "stopped_by_time": res.stopped_by_time, "last_loss": res.last_loss, "batch_size": batch_size,
                "lr": lr, "trainable_parameters": trainable, "interrupted": False,
                "parameters": sum(p.numel() for p in model.parameters())}

    def train_svae(self) -> None:
        model, tokenizer, _ = self.backbone()
        emb = model.get_input_embeddings().weight.detach().float()
        hidden = int(model.config.hidden_size)
        shape = TrainConfig(vae_preset="modern", num_layers=self.s.vae_layers, max_tokens=self.s.max_tokens, dropout=0.0,
                            vae_encoder=self.s.vae_encoder)
        config = vae_config(shape, emb.shape[0], tokenizer, hidden_size=hidden,
                            num_heads=vae_heads(hidden, int(model.config.num_attention_heads)), embed_dim=emb.shape[1])
        torch.manual_seed(self.s.seed)
        vae = SentenceVAE(config)
        vae.init_embeddings_from(emb)
        if self.s.vae_encoder == "positional":
            vae.warm_start()
        freeze_embeddings(vae)
        record = self._train("svae", vae, "svae", self.s.svae_batch, self.s.svae_lr, self.s.svae_steps)

        save_vae(vae.eval(), self.run.vae_dir)  # the frozen embedding once, in shared.safetensors
        self._plot("svae")
        self.save("svae", done=True, **record, layers=config.num_layers, hidden_size=config.hidden_size,
                  num_heads=config.num_heads, vocab_size=config.vocab_size)

    def eval_svae(self) -> None:
        tokenizer = self.backbone()[1]
        vae = SentenceVAE.from_pretrained(self.run.vae_dir)
        _, heldout = self.run.read_split()
        stream = self.examples("svae")
        segments = [seg for doc in heldout for seg in stream.examples(doc)]
        if len(segments) > self.s.eval_segments:
            keep = sorted(random.Random(self.s.seed).sample(range(len(segments)), self.s.eval_segments))
            segments = [segments[i] for i in keep]
        chunks = [segments[i:i + 32] for i in range(0, len(segments), 32)]
        parts: list[dict[str, Any]] = []
        bar = tqdm(total=len(chunks), desc="SentenceVAE held-out eval", unit="batch", dynamic_ncols=True)
        for i, chunk in enumerate(chunks):
            if parts and self.time_left() <= 0:  # at least one batch, then only what fits
                break
            parts.append(evaluate_svae(vae, chunk, pad_id=vae.config.pad_token_id, batch_size=len(chunk),
                                       tokenizer=tokenizer if i == 0 else None, num_examples=6 if i == 0 else 0))
            bar.update(1)
        cut = len(parts) < len(chunks)
        bar.set_postfix_str(f"stopped: time budget ({len(parts)} of {len(chunks)} batches)" if cut else "done: all batches")
        bar.close()
        result = merge_svae_evals(parts)
        self.save("svae_eval", done=True, **result, cut_by_time=cut, planned_segments=len(segments))

        self.log(reconstruction_summary(result, planned=len(segments)))

    def train_sllm(self) -> None:
        model, tokenizer, _ = self.backbone()
        vae = SentenceVAE.from_pretrained(self.run.vae_dir)
        lora = LoraConfig(r=self.s.lora_r, lora_alpha=2 * self.s.lora_r, lora_dropout=0.0,
                          target_modules=lora_targets(model))
        sllm = graft(shared_copy(model), vae, lora=lora, tokenizer=tokenizer)
        freeze_embeddings(sllm.vae)
        if self.s.distill > 0:  # the un-grafted model is the teacher; LoRA leaves its weights as they are
            sllm.set_teacher(model, weight=self.s.distill)
        record = self._train("sllm", sllm, "sllm", self.s.sllm_batch, self.s.sllm_lr, self.s.sllm_steps)
        sllm.set_teacher(None)
        sllm.eval()
        try:  # small: LoRA + VAE + head, the backbone by reference (smollm2 loader, hub id or path)
            sllm.save_pretrained(self.run.sllm_model_dir, save_backbone="reference")
            mode = "reference"
        except ValueError:
            sllm.save_pretrained(self.run.sllm_model_dir, save_backbone="weights")
            mode = "weights"

        # the SLLM's VAE trained its layers, not its frozen embedding: link the SVAE's copy of it
        record["vae_embedding"] = save_vae(sllm.vae, self.run.sllm_model_dir / "vae", share_with=self.run.vae_dir)
        self.sllm = sllm
        self._plot("sllm")
        self.save("sllm", done=True, **record, lora_r=self.s.lora_r, distill=self.s.distill, lora_targets=",".join(lora.target_modules),
                  save_backbone=mode)

    def load_sllm(self) -> Any:
        if self.sllm is None:
            self.sllm = graftlm.load(self.run.sllm_model_dir, backbone=shared_copy(self.backbone()[0]))
        return self.sllm.eval()

    def generate(self) -> None:
        model, tokenizer, _ = self.backbone()
        sllm = self.load_sllm()
        _, heldout = self.run.read_split()
        prompt, reference = (self.s.prompt, None) if self.s.prompt else default_prompt(heldout, self.examples("svae"), tokenizer)
        self.log(f"\nprompt: {prompt!r}\nSentenceLLM continues ({self.s.new_sentences} sentences, streaming, greedy):")
        pieces: list[str] = []
        with torch.inference_mode():
            # the termination head decides when the text ends (at most new_sentences sentences)
            for step in sllm.stream(prompt, tokenizer, max_new_sentences=self.s.new_sentences,
                                    max_tokens_per_sentence=self.s.max_tokens):
                if step[0] is not None:
                    pieces.append(step[0])
                    print(f"  [{len(pieces)}] {step[0]!r}", flush=True)
                if pieces and self.time_left() < 0.4 * self.allowance:  # keep time for the backbone's turn
                    break
        cut = len(pieces) < self.s.new_sentences and self.time_left() < 0.4 * self.allowance
        if cut:
            self.log(f"  (stopped after {len(pieces)} sentence(s): the phase's time budget)")
        elif len(pieces) < self.s.new_sentences:
            self.log(f"  (the termination head ended the text after {len(pieces)} sentence(s))")
        n_new = sum(len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in pieces)
        ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=max(n_new, 8), pad_token_id=self.pad_id(),
                                 max_time=max(self.time_left(), 1.0))
        backbone_text = tokenizer.decode(out[0, ids.shape[1]:].tolist(), skip_special_tokens=True)
        self.log(f"the backbone alone continues ({max(n_new, 8)} tokens, greedy): {backbone_text!r}")
        if reference:
            self.log(f"the held-out text actually continues: {reference!r}")
        self.save("generate", done=True, prompt=prompt, reference=reference, sllm_sentences=pieces,
                  sllm_text="".join(pieces), sllm_new_tokens=n_new, backbone_text=backbone_text, cut_by_time=cut)

    def measure(self) -> None:
        model, tokenizer, _ = self.backbone()
        sllm = self.load_sllm()
        train, heldout = self.run.read_split()
        stream = self.examples("sllm")
        windows = [w for doc in heldout for w in stream.examples(doc)][: self.s.eval_paragraphs]
        ppl_text = "held-out"
        if not windows:  # no held-out paragraph with 2+ sentences: say so, measure on training text
            windows, ppl_text = [w for doc in train for w in stream.examples(doc)][: self.s.eval_paragraphs], "training"
        mean_len = float(self.run.result("setup")["mean_segment_tokens"])
        sentence_len = max(2, min(self.s.max_tokens, round(mean_len)))
        bar = tqdm(total=4, desc="measuring", unit="measurement", dynamic_ncols=True)

        def progress(what: str) -> None:
            bar.set_postfix_str(what)
            if bar.n < bar.total and what != "causal perplexity":
                bar.update(1)

        kwargs = dict(windows=windows, heldout_docs=heldout,
                      segmenter=RegexSegmenter(max_tokens=self.s.max_tokens, tokenizer=tokenizer),
                      pad_id=self.pad_id(), new_tokens=self.s.bench_tokens, sentence_len=sentence_len,
                      mean_segment_tokens=mean_len, progress=progress)
        kwargs.update(time_limit(measure_all, self.deadline))
        result = measure_all(sllm, model, tokenizer, **kwargs)
        bar.update(bar.total - bar.n)
        late = self.time_left() < 0
        bar.set_postfix_str(f"done, {-self.time_left():.0f} s past its time budget" if late else "done: all measurements")
        bar.close()
        self.save("measure", done=True, **result, ppl_text=ppl_text, torch_threads=torch.get_num_threads(),
                  time_limited=bool(kwargs.keys() & {"deadline", "budget_s"}))

    def report(self) -> None:
        self.save("report", done=False)
        path = write_report(self.run)
        self.save("report", done=True, path=str(path))

    def _plot(self, phase: str) -> None:
        try:
            plot_run(self.run.path / phase, self.run.path / f"{phase}-loss.png")
        except ValueError as err:  # too few steps to log a point
            self.log(f"(no {phase} loss curve: {err})")


def run_phases(session: DemoSession) -> None:
    """Run every phase that is not done yet, in order, each within its share of the budget."""
    run = session.run
    steps = [("setup", session.setup), ("svae", session.train_svae), ("svae_eval", session.eval_svae),
             ("sllm", session.train_sllm), ("generate", session.generate), ("measure", session.measure),
             ("report", session.report)]
    budget = session.s.minutes * 60
    for i, (phase, fn) in enumerate(steps, 1):
        if run.done(phase):
            session.log(f"[{i}/{len(steps)}] {phase}: done earlier, reused")
            continue
        allowance = session.begin_phase(phase)
        share_text = "" if phase == "setup" else f"; this phase gets {allowance:.0f} s"
        session.log(f"[{i}/{len(steps)}] {phase} (at {session.elapsed():.0f} s of the {budget:.0f} s budget{share_text})")
        with PhaseClock(torch.get_num_threads()) as clock:
            fn()
        timing = clock.record()
        record = run.state["phases"][phase]
        record["phase_seconds"] = timing["wall_s"]
        record["timing"] = timing
        if phase != "setup":
            record["allowance_s"] = round(allowance, 1)
        warning = busy_warning(timing, f"the {phase} phase") if phase in ("svae", "sllm", "measure") else None
        if warning:
            record["busy_warning"] = warning
            session.log(warning)
        run.state["elapsed"] = round(session.elapsed(), 2)
        run.save()
