"""Text-encoder plumbing the attacks share: token ids in, hidden states out (with gradients),
placeholder tokens whose embeddings are learned, and the vocabulary searched over."""

from __future__ import annotations

import copy
import re
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch


def tokenize(pipe, prompts: Sequence[str]) -> torch.Tensor:
    """Token ids exactly as the pipeline pads and truncates them."""
    tok = pipe.tokenizer
    return tok(list(prompts), padding="max_length", max_length=tok.model_max_length, truncation=True,
               return_tensors="pt").input_ids


def encode_ids(pipe, ids: torch.Tensor) -> torch.Tensor:
    """Hidden states the denoiser cross-attends to; differentiable, unlike encode_prompt."""
    return pipe.text_encoder(ids.to(pipe.text_encoder.device))[0]


def word_vocabulary(tokenizer, banned: Sequence[str] = ()) -> torch.Tensor:
    """Ids of whole-word alphabetic tokens (no sub-word pieces, no specials, none of ``banned``)."""
    banned_set = {w.lower() for w in banned}
    ids = []
    for token, idx in tokenizer.get_vocab().items():
        word = token[:-4] if token.endswith("</w>") else token  # CLIP marks word ends
        if re.fullmatch(r"[a-z]{2,}", word) and word not in banned_set and idx < tokenizer.vocab_size:
            ids.append(idx)
    return torch.tensor(sorted(ids))


class Placeholders:
    """``n`` new tokens ``<adv0>…`` whose input embeddings are a learnable (n, dim) tensor.

    Inside the context the pipeline's tokenizer (a copy with the tokens added) and its text
    encoder understand them, so ``pipe(prompt="a <adv0> circle")`` works; on exit both are
    restored exactly. Hooks on the embedding layer swap the vectors in, so nothing is
    resized and the model's own weights are never touched.

    With ``project_to`` (token ids), the forward pass uses each vector's nearest real token
    and the gradient flows straight through to the continuous vector (PEZ, Wen et al. 2023,
    the projected optimisation UnlearnDiffAtk uses), so what is optimised is what a text
    prompt can say."""

    def __init__(self, pipe, n: int, init: torch.Tensor | None = None, prefix: str = "adv",
                 project_to: torch.Tensor | None = None) -> None:
        self.pipe = pipe
        emb = pipe.text_encoder.get_input_embeddings()
        self.vocab_size = emb.num_embeddings
        self.tokens = [f"<{prefix}{i}>" for i in range(n)]
        start = init if init is not None else emb.weight[torch.randint(self.vocab_size, (n,))]
        self.vectors = torch.nn.Parameter(start.detach().clone().float())
        self._hooks: list = []
        self._tokenizer = None
        self.project_to = project_to
        # the embedding table is frozen: gather the projection targets once, not every forward
        self._project_table = None if project_to is None else emb.weight[project_to].detach().float()
        self.last_tokens: list[int] | None = None
        """With ``project_to``: the real token ids the last forward pass ran."""

    def effective_vectors(self) -> torch.Tensor:
        """The vectors the text encoder sees: learned, or projected with a straight-through gradient."""
        if self.project_to is None:
            return self.vectors
        rows = self._nearest_rows(self._project_table)
        self.last_tokens = [int(self.project_to[i]) for i in rows]
        nearest = self._project_table[rows]
        return self.vectors + (nearest - self.vectors).detach()

    def _nearest_rows(self, table: torch.Tensor) -> torch.Tensor:
        sims = torch.nn.functional.normalize(self.vectors.detach(), dim=-1) @ \
            torch.nn.functional.normalize(table, dim=-1).T
        return sims.argmax(dim=-1).cpu()  # index CPU id tables whatever device the encoder is on

    @property
    def text(self) -> str:
        return " ".join(self.tokens)

    def __enter__(self) -> "Placeholders":
        pipe = self.pipe
        self._tokenizer = pipe.tokenizer
        tok = copy.deepcopy(pipe.tokenizer)
        tok.add_tokens(self.tokens)
        self.ids = tok.convert_tokens_to_ids(self.tokens)
        pipe.tokenizer = tok
        emb = pipe.text_encoder.get_input_embeddings()
        state: dict = {}

        def pre(module, args):
            ids = args[0]
            state["ids"] = ids
            return (ids.clamp(max=self.vocab_size - 1),)

        def post(module, args, output):
            ids = state.pop("ids")
            if (ids >= self.vocab_size).any():
                output = output.clone()
                vectors = self.effective_vectors()
                for k, token_id in enumerate(self.ids):
                    mask = ids == token_id
                    if mask.any():
                        output[mask] = vectors[k].to(output.dtype)
            return output

        self._hooks = [emb.register_forward_pre_hook(pre), emb.register_forward_hook(post)]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._hooks:
            h.remove()
        self.pipe.tokenizer = self._tokenizer

    def nearest_tokens(self, vocab: torch.Tensor) -> list[int]:
        """Project each learned vector to the closest real token (cosine), as UnlearnDiffAtk does."""
        table = self.pipe.text_encoder.get_input_embeddings().weight[vocab].float()
        return [int(vocab[i]) for i in self._nearest_rows(table)]


def word_init_vectors(pipe, words: Sequence[str], n: int) -> torch.Tensor:
    """(n, dim): the input embeddings of ``words``' first tokens, cycled over ``n`` learned tokens,
    where an inversion starts (Concept Inversion from one neutral word, the adaptive inversion and
    the trainer's inversion pool from what names the concept)."""
    table = pipe.text_encoder.get_input_embeddings().weight
    ids = [pipe.tokenizer(w, add_special_tokens=False).input_ids[0] for w in words if w.strip()]
    if not ids:
        raise ValueError("no initialisation words for the learned tokens")
    return table[[ids[i % len(ids)] for i in range(n)]].detach()


class TokenSlots:
    """``k`` token positions whose input embeddings are given per row, encoded through the text
    encoder with gradients: the prompt ``"<context> a … a"`` (k fillers after one of
    ``contexts``, by default only the empty one) with row ``i``'s vectors in place of the
    fillers. A row's hidden states are exactly those of ``"<context> <adv0> … <adv{k-1}>"``
    under ``Placeholders`` holding the same vectors (tested), i.e. what a textual inversion of
    ``k`` tokens can say: robust DUO's token-space adversary optimises such vectors alone, its
    inversion pool after each pair's safe caption, where Concept Inversion puts its token.
    One text encoder with a start token (SD 1.x/2.x, ShapeWorld); anything else is refused."""

    FILLER = "a"

    def __init__(self, pipe, k: int, contexts: Sequence[str] = ("",)) -> None:
        self.pipe, self.k = pipe, k
        filler = pipe.tokenizer(self.FILLER, add_special_tokens=False).input_ids
        if len(filler) != 1:
            raise ValueError(f"token-space adversary: {type(pipe.tokenizer).__name__} splits '{self.FILLER}'; "
                             "use the conditioning-space adversary")
        self.filler_id = filler[0]
        texts = [f"{context.strip()} {' '.join([self.FILLER] * k)}".strip() for context in contexts]
        self.ids = tokenize(pipe, texts)
        positions = []
        for context, text, row in zip(contexts, texts, self.ids):
            end = len(pipe.tokenizer(text).input_ids) - 1  # the end token's position: the fillers precede it
            if end >= len(row) or row[end - k : end].tolist() != filler * k or end - k < 1:
                raise ValueError(f"token-space adversary: {type(pipe.tokenizer).__name__} does not put {k} "
                                 f"'{self.FILLER}' tokens after {context.strip()!r} and before an end token "
                                 "(a context too long for the tokenizer?); use the conditioning-space adversary")
            positions.append(list(range(end - k, end)))
        self.positions = torch.tensor(positions)

    def filler_vectors(self) -> torch.Tensor:
        """(k, dim): the filler's input embedding in every slot, the adversary's neutral start."""
        emb = self.pipe.text_encoder.get_input_embeddings().weight
        return emb[[self.filler_id] * self.k].detach().float()

    def encode(self, vectors: torch.Tensor, contexts: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states for ``vectors`` (rows, k, dim), row ``i`` after context ``contexts[i]``
        (default the first context for every row), differentiable in ``vectors``."""
        contexts = torch.zeros(len(vectors), dtype=torch.long) if contexts is None else contexts.cpu()
        rows = torch.arange(len(vectors))[:, None]
        positions = self.positions[contexts]

        def put(module, args, output):
            output = output.clone()
            output[rows.to(output.device), positions.to(output.device)] = vectors.to(device=output.device,
                                                                                      dtype=output.dtype)
            return output

        hook = self.pipe.text_encoder.get_input_embeddings().register_forward_hook(put)
        try:
            return encode_ids(self.pipe, self.ids[contexts])
        finally:
            hook.remove()


@contextmanager
def frozen(*modules) -> Iterator[None]:
    """requires_grad off for the duration (attacks learn inputs, never weights)."""
    saved = [[p.requires_grad for p in m.parameters()] for m in modules]
    for m in modules:
        m.requires_grad_(False)
    try:
        yield
    finally:
        for m, flags in zip(modules, saved):
            for p, f in zip(m.parameters(), flags):
                p.requires_grad_(f)
