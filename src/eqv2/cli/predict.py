"""``eqv2 predict CHECKPOINT INPUT -o OUTPUT``: energies and forces for every structure.

Predictions go under their own keys, ``eqv2_energy`` (``info``) and ``eqv2_forces``
(``arrays``), so the input's reference labels (``energy``/``forces``) stay in the output beside
them; ``--label-prefix ''`` writes them as the plain ``energy``/``forces`` instead (replacing
any reference labels). The output path is checked before the model runs and may not be the
input. Structures are batched by count (``--batch-size``) and by an atom/edge budget
(``--max-atoms``/``--max-edges``) so that large structures do not run out of memory.

Exit status: 0 when every prediction is finite; 1 when the model returned a non-finite energy or
force for some structure (those get ``eqv2_error`` in ``info`` instead of predictions, and are
named); 2 for an unusable input or argument (nothing is written).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eqv2.cli.io import add_input_argument
from eqv2.cli.model_args import add_model_arguments
from eqv2.cli.sharded import add_sharding_arguments

DEFAULT_PREFIX = "eqv2_"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="predict energies and forces with a checkpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", type=Path, help="eqv2 or fairchem checkpoint (.pt)")
    add_input_argument(p)
    p.add_argument("-o", "--output", required=True, help="output .extxyz")
    p.add_argument("--batch-size", type=int, default=16, help="structures per model call (16)")
    p.add_argument(
        "--max-atoms", type=int, default=None, help="atoms per model call (default: no limit)"
    )
    p.add_argument(
        "--max-edges", type=int, default=None, help="edges per model call (default: no limit)"
    )
    p.add_argument(
        "--stress",
        action="store_true",
        help="also predict the stress (eV/Å³, ASE's sign: positive under tension; written in "
        "Voigt order xx yy zz yz xz xy) from the model's stress head, or else as the strain "
        "derivative of the energy",
    )
    p.add_argument(
        "--label-prefix",
        default=DEFAULT_PREFIX,
        help=f"prefix of the prediction keys ({DEFAULT_PREFIX}: {DEFAULT_PREFIX}energy, "
        f"{DEFAULT_PREFIX}forces); '' writes plain energy/forces, replacing reference labels",
    )
    add_model_arguments(p)
    add_sharding_arguments(p)
    p.set_defaults(func=run)


def budget_batches(
    sizes: Sequence[int],
    *,
    max_count: int,
    max_atoms: int | None = None,
    edges: Sequence[int] | None = None,
    max_edges: int | None = None,
) -> Iterator[range]:
    """Consecutive index ranges of at most ``max_count`` structures, ``max_atoms`` atoms and
    ``max_edges`` edges (``edges[i]`` per structure); a structure over a budget runs alone."""
    budgets = {"batch_size": max_count, "max_atoms": max_atoms, "max_edges": max_edges}
    for name, value in budgets.items():
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} {value}: must be at least 1.")
    start, atoms, n_edges = 0, 0, 0
    for i, n in enumerate(sizes):
        e = edges[i] if edges is not None else 0
        over = (
            i - start >= max_count
            or (max_atoms is not None and atoms + n > max_atoms)
            or (max_edges is not None and n_edges + e > max_edges)
        )
        if over and i > start:
            yield range(start, i)
            start, atoms, n_edges = i, 0, 0
        atoms, n_edges = atoms + n, n_edges + e
    if start < len(sizes):
        yield range(start, len(sizes))


def predict_in_batches(
    potential: Any,
    structures: Sequence[Any],
    *,
    batch_size: int = 16,
    max_atoms: int | None = None,
    max_edges: int | None = None,
    stress: bool = False,
) -> list[dict[str, Any]]:
    """``potential.predict`` over ``budget_batches`` of the structures, in input order.

    With ``max_edges`` each structure's graph is built once, alone, to count its edges; the
    batches are then merged from those graphs (`eqv2.graph.merge_graphs`), not built again.

    Raises:
        MemoryError: the device or host ran out of memory; the message names the batch, its
            atoms (and edges), its largest structure and which option to lower.
    """
    from eqv2.cli.memory import oom_errors, out_of_memory
    from eqv2.graph import merge_graphs

    graphs = None
    if max_edges is not None:
        graphs = [potential.build_graph([a], index_offset=i) for i, a in enumerate(structures)]
    edges = None if graphs is None else [int(g["edge_index"].shape[1]) for g in graphs]
    results: list[dict[str, Any]] = []
    sizes = [len(a) for a in structures]
    for batch in budget_batches(
        sizes, max_count=batch_size, max_atoms=max_atoms, edges=edges, max_edges=max_edges
    ):
        chunk = [structures[i] for i in batch]
        try:
            if graphs is None:
                results.extend(potential.predict(chunk, batch_size=len(chunk), stress=stress))
            else:
                graph = merge_graphs([graphs[i] for i in batch])
                results.extend(potential.predict_graph(graph, stress=stress))
        except oom_errors() as exc:
            atoms = sum(sizes[i] for i in batch)
            edge_text = "" if edges is None else f", {sum(edges[i] for i in batch)} edges"
            raise out_of_memory(
                exc,
                f"predicting structures {batch.start}..{batch.stop - 1} together "
                f"({len(batch)} structures, {atoms} atoms{edge_text})",
                structures,
                batch,
                f"lower --max-atoms (e.g. {max(atoms // 2, 1)}), --max-edges or --batch-size",
            ) from exc
    return results


def nonfinite_message(index: int, atoms: Any, result: dict[str, Any]) -> str | None:
    """Why ``result`` is not a usable prediction (non-finite values), or None."""
    from eqv2.graph import structure_label

    bad = [
        f"{key} {value!r}" if np.ndim(value) == 0 else f"non-finite {key}"
        for key, value in result.items()
        if not np.all(np.isfinite(value))
    ]
    if not bad:
        return None
    return (
        f"{structure_label(index, atoms, formula=True)}: the model returned {', '.join(bad)}. "
        "The checkpoint may be damaged, or the structure far outside the training data "
        "(check its geometry and elements)."
    )


def _attach(atoms: Any, result: dict[str, Any], prefix: str) -> None:
    from ase.calculators.singlepoint import SinglePointCalculator

    if not prefix:
        atoms.calc = SinglePointCalculator(atoms, **result)
        return
    for key, value in result.items():
        if np.ndim(value) == 2 and len(value) == len(atoms) and key != "stress":
            atoms.arrays[prefix + key] = np.asarray(value)
        else:
            atoms.info[prefix + key] = value


def _predict_chunk(
    potential: Any, structures: Sequence[Any], indices: Sequence[int], args: argparse.Namespace
) -> list[Any]:
    """Predictions of ``structures[indices]`` attached (or ``eqv2_error``), as ``Atoms``."""
    from ase.stress import full_3x3_to_voigt_6_stress

    chunk = [structures[i] for i in indices]
    results = predict_in_batches(
        potential, chunk, batch_size=args.batch_size, max_atoms=args.max_atoms,
        max_edges=args.max_edges, stress=args.stress,
    )  # fmt: skip
    for i, atoms, res in zip(indices, chunk, results, strict=True):
        if "stress" in res:  # ASE's Voigt order, as extxyz and Atoms.get_stress() use
            res["stress"] = full_3x3_to_voigt_6_stress(res["stress"])
        problem = nonfinite_message(i, atoms, res)
        if problem is None:
            _attach(atoms, res, args.label_prefix)
        else:
            atoms.info[f"{args.label_prefix or DEFAULT_PREFIX}error"] = problem
    return chunk


def run(args: argparse.Namespace) -> int:
    from eqv2.cli.sharded import screen

    key = f"{args.label_prefix or DEFAULT_PREFIX}error"
    failed: list[str] = []

    def tally(atoms: Any) -> None:
        if key in atoms.info:
            failed.append(atoms.info[key])

    output, count = screen(args, _predict_chunk, tally)
    if count is None:  # a torchrun rank other than 0: rank 0 writes and reports
        return 0
    print(f"wrote {count} structures to {output}")
    if failed:
        for problem in failed:
            print(f"eqv2 predict: error: {problem}", file=sys.stderr)
        print(
            f"eqv2 predict: {len(failed)} of {count} structures have no usable "
            "prediction (marked with an error in the output).",
            file=sys.stderr,
        )
        return 1
    return 0
