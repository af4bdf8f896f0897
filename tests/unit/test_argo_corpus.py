"""Argo Rollouts' own manifests, with only their apiVersion changed, pass `kubectl herdsman lint`.

The expectations (what Argo itself refuses, what Herdsman refuses on purpose, what is not
supported yet) live in `harness.argo_corpus`, with the reason for each entry.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.argo_corpus import (
    ARGO_REFUSES,
    HERDSMAN_REFUSES,
    NOT_YAML,
    PENDING,
    CorpusDocument,
    corpus_dir,
    documents,
    unusable_files,
)
from herdsman.cli.lint import Document, lint_object

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def corpus() -> Path:
    return corpus_dir()


@pytest.fixture(scope="module")
def linted(corpus: Path) -> list[tuple[CorpusDocument, Document]]:
    return [(doc, lint_object(doc.body, source=doc.id)) for doc in documents(corpus)]


def _problems(result: Document) -> str:
    return "; ".join(str(e) for e in result.errors) or "no errors"


def test_every_listed_document_exists(linted: list[tuple[CorpusDocument, Document]]) -> None:
    ids = {doc.id for doc, _ in linted}
    stale = sorted((set(ARGO_REFUSES) | set(HERDSMAN_REFUSES) | set(PENDING)) - ids)
    assert not stale, f"listed but not in the corpus: {stale}"


def test_only_known_upstream_defects_fail_to_parse(corpus: Path) -> None:
    assert unusable_files(corpus) == sorted(NOT_YAML)


def test_corpus_lints_as_argo_would(
    linted: list[tuple[CorpusDocument, Document]], capsys: pytest.CaptureFixture[str]
) -> None:
    wrong: list[str] = []
    now_passing: list[str] = []
    for doc, result in linted:
        refused = bool(result.errors)
        as_expected = refused == doc.expect_refused
        if doc.id in HERDSMAN_REFUSES and refused:
            # A deliberate refusal must say which field it refuses.
            field = HERDSMAN_REFUSES[doc.id]
            as_expected = any(
                e.path.startswith(field) and e.kind != "Unknown field" for e in result.errors
            )
        if doc.id in PENDING:
            if as_expected:
                now_passing.append(doc.id)
            continue
        if not as_expected:
            want = "refused" if doc.expect_refused else "accepted"
            wrong.append(f"{doc.id} ({doc.kind}) should be {want}: {_problems(result)}")
    valid = [(d, r) for d, r in linted if d.id not in ARGO_REFUSES]
    accepted = sum(not r.errors for _, r in valid)
    with capsys.disabled():
        print(
            f"\nArgo Rollouts corpus: {accepted} of {len(valid)} valid documents accepted"
            f" ({len(PENDING)} pending, {len(HERDSMAN_REFUSES)} refused on purpose,"
            f" {len(linted) - len(valid)} that Argo refuses stay refused)"
        )
    assert not wrong, "\n".join(wrong)
    assert not now_passing, f"supported now: remove from PENDING: {now_passing}"
