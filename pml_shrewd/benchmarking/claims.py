"""The paper's claims (Arponen & Bishop, table 1), checked on one run's measured figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..losses import VARIANTS

OURS = ("shrewd", "shred")


def check_claims(rows: Mapping[str, Mapping[str, Any]], margin: float = 0.03) -> dict[str, dict[str, Any]]:
    """Each claim that the rows present allow: ``{claim: {"holds": bool, "detail": str}}``.

    ``rows`` maps a row name to its figures (``"mAHP@k"``, ``"mAHP@k_continuous"``) and its
    role: ``"variant"`` (a :data:`~pml_shrewd.losses.VARIANTS` key, ``None`` for a classical
    method), ``"reference"`` (a baseline at its own best setting) and ``"sweep"`` (e.g. other
    code lengths: never compared). Our rows are the plain ``shrewd`` / ``shred`` rows; every
    other non-sweep row that is not L_sim is a baseline, and the margin is taken over the best
    of them. "The best PML baseline" is the best PML row, reference rows included: a PML loss
    at its own best setting is the one a user would pick instead. A tuning grid (several rows of
    one trained variant on the shared budget: :func:`is_tuning_grid`) has no claims. "a > b"
    claims are strict; a margin is "at least" (to 1e-9: 0.71 - 0.68 is 0.0299...).
    """

    if is_tuning_grid(rows):
        return {}
    plain = plain_rows(rows).get

    def mahp(name: str | None) -> float | None:
        return None if name is None else rows[name]["mAHP@k"]

    def drop(name: str | None) -> float | None:
        return None if name is None else rows[name]["mAHP@k_continuous"] - rows[name]["mAHP@k"]

    checks: dict[str, dict[str, Any]] = {}

    def claim(
        text: str, a: str, b: str | None, lhs: float | None, rhs: float | None, need: float = 0.0
    ) -> None:
        if lhs is None or rhs is None:
            return
        holds = round(lhs - rhs, 9) >= need if need else lhs > rhs
        checks[text] = dict(holds=bool(holds), detail=f"{a} {lhs:.4f} vs {b} {rhs:.4f} ({lhs - rhs:+.4f})")

    baselines = [n for n, r in rows.items() if not r.get("sweep") and r.get("variant") not in (*OURS, "sim")]
    pml = [n for n in baselines if is_pml_row(rows[n])]
    best = max(baselines, key=mahp) if baselines else None
    best_pml = max(pml, key=mahp) if pml else None
    l_cls, l_sim, kl_cls = plain("cls"), plain("sim"), plain("kl_cls")
    key = "mAHP@k"
    for variant in OURS:
        ours = plain(variant)
        if ours is None:
            continue
        short = VARIANTS[variant].name.split(" ")[0]  # "SHRED", whatever the row is called
        claim(f"{short} binary {key} > L_cls only", short, l_cls, mahp(ours), mahp(l_cls))
        claim(f"{short} binary {key} > best PML baseline", short, best_pml, mahp(ours), mahp(best_pml))
        claim(
            f"{short} binary {key} >= best baseline + {margin}", short, best, mahp(ours), mahp(best), margin
        )
    shrewd = plain("shrewd")
    claim(f"L_sim alone below SHREWD ({key})", "SHREWD", l_sim, mahp(shrewd), mahp(l_sim))
    claim(
        "binarisation drop smaller with L_KL (L_sim vs SHREWD)",
        "L_sim drop",
        "SHREWD drop",
        drop(l_sim),
        drop(shrewd),
    )
    claim(
        "binarisation drop smaller with L_KL (L_cls vs L_KL + L_cls)",
        "L_cls drop",
        "L_KL + L_cls drop",
        drop(l_cls),
        drop(kl_cls),
    )
    return checks


def plain_rows(rows: Mapping[str, Mapping[str, Any]]) -> dict[str | None, str]:
    """``{variant: row name}`` of the rows on the shared budget (neither a reference baseline at its
    own setting nor a sweep row); the first such row of each variant."""
    plain: dict[str | None, str] = {}
    for name, row in _shared_budget(rows):
        plain.setdefault(row.get("variant"), name)
    return plain


def _shared_budget(rows: Mapping[str, Mapping[str, Any]]):
    """``(name, row)`` of the rows on the shared budget: neither a reference nor a sweep row."""
    return ((n, r) for n, r in rows.items() if not r.get("reference") and not r.get("sweep"))


def is_tuning_grid(rows: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether a trained variant has several rows on the shared budget (a tuning grid, e.g. one
    row per learning rate): the claims compare one row per method, so a grid has none (which of
    its rows would stand for the method is the tuning's question, not the claims')."""
    trained = [r["variant"] for _, r in _shared_budget(rows) if r.get("variant") is not None]
    return len(trained) != len(set(trained))


def is_pml_row(row: Mapping[str, Any]) -> bool:
    """Whether a row is one of PML's own losses."""
    variant = row.get("variant")
    return variant in VARIANTS and VARIANTS[variant].pml is not None


def check_caption_claims(
    rows: Mapping[str, Mapping[str, Any]],
    relevances: Sequence[str] = ("sentence", "words"),
    margin: float = 0.02,
    max_drop: float = 0.01,
) -> dict[str, dict[str, Any]]:
    """The caption benchmark's targets, per relevance ``r`` (keys ``"mAHP@k [r]"``):

    - SHREWD at least ``margin`` above the best PML row (pseudo-labels), reference rows included;
    - SHREWD closes at least half the distance from ITQ to the text-side oracle;
    - SHREWD's binarisation drop (continuous - binary) at most ``max_drop``;
    - L_KL costs nothing: SHREWD >= L_sim.

    Rows are found by ``"variant"`` / ``"method"`` (``itq``, ``text_oracle``) as in :func:`check_claims`.
    """
    if is_tuning_grid(rows):
        return {}
    plain = plain_rows(rows)
    by_method = {r.get("method"): n for n, r in rows.items() if not r.get("sweep")}
    shrewd, l_sim = plain.get("shrewd"), plain.get("sim")
    pml = [n for n, r in rows.items() if is_pml_row(r) and not r.get("sweep")]
    itq, oracle = by_method.get("itq"), by_method.get("text_oracle")
    checks: dict[str, dict[str, Any]] = {}
    if shrewd is None:
        return checks
    for rel in relevances:
        key = f"mAHP@k [{rel}]"
        ours = rows[shrewd][key]
        if pml:
            best = max(pml, key=lambda n: rows[n][key])
            gap = ours - rows[best][key]
            checks[f"SHREWD >= best PML baseline + {margin} ({rel})"] = dict(
                holds=bool(round(gap, 9) >= margin),
                detail=f"SHREWD {ours:.4f} vs {best} {rows[best][key]:.4f} ({gap:+.4f})",
            )
        if itq is not None and oracle is not None:
            span = rows[oracle][key] - rows[itq][key]
            share = (ours - rows[itq][key]) / span if span > 0 else float("nan")
            checks[f"SHREWD closes >= half of ITQ -> text oracle ({rel})"] = dict(
                holds=bool(round(share, 9) >= 0.5),  # "at least", to rounding
                detail=f"ITQ {rows[itq][key]:.4f}, SHREWD {ours:.4f}, oracle {rows[oracle][key]:.4f}: "
                f"{share:.2f} of the distance",
            )
        cont = rows[shrewd].get(f"mAHP@k_continuous [{rel}]")
        if cont is not None:
            checks[f"SHREWD binarisation drop <= {max_drop} ({rel})"] = dict(
                holds=bool(round(cont - ours, 9) <= max_drop),
                detail=f"continuous {cont:.4f} - binary {ours:.4f} = {cont - ours:+.4f}",
            )
        if l_sim is not None:
            lhs = rows[l_sim][key]
            checks[f"L_KL costs no mAHP: SHREWD >= L_sim ({rel})"] = dict(
                holds=bool(ours >= lhs), detail=f"SHREWD {ours:.4f} vs L_sim {lhs:.4f} ({ours - lhs:+.4f})"
            )
    return checks
