"""The hint encoding's former names still work: `--hint-profile v1|v2` (conformance CLI), `--profile v1|v2`
(reference CLI), `Env.profile` for adapters written before `Env.hint_encoding`, and trace files whose config has
"profile". v1 = flat, v2 = snapshot (the hint encoding, not the deployment's session protocol)."""
from __future__ import annotations

import pytest

import conformance.__main__ as cli
from adapters.reference import __main__ as ref_cli
from conformance.harness import RunConfig
from conformance.interface import Env
from conformance.machines import new_session
from conformance.model_impl import ModelServer


class _Stop(Exception):
    pass


def _run_config_of(monkeypatch, *hint_args: str) -> dict:
    seen = {}

    def capture(**kw):
        seen.update(kw)
        raise _Stop

    monkeypatch.setattr(cli, "RunConfig", capture)
    with pytest.raises(_Stop):
        cli.main(["run", "--client", "model", "--server", "model", *hint_args])
    return seen


@pytest.mark.parametrize("args,encoding", [
    ((), "snapshot"),
    (("--hint-encoding", "flat"), "flat"),
    (("--hint-profile", "v1"), "flat"),
    (("--hint-profile", "v2"), "snapshot"),
])
def test_conformance_cli_hint_encoding_and_its_deprecated_alias(monkeypatch, args, encoding):
    assert _run_config_of(monkeypatch, *args)["hint_encoding"] == encoding


def test_conformance_cli_refuses_an_unknown_hint_profile(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--client", "model", "--server", "model", "--hint-profile", "flat"])
    assert "--hint-profile" in capsys.readouterr().err


def test_reference_cli_profile_alias(monkeypatch):
    seen = []
    monkeypatch.setattr(ref_cli, "_demo", lambda args: seen.append(args.hint_encoding) or 0)
    for argv in (["demo", "--profile", "v1"], ["demo", "--hint-encoding", "flat"], ["demo"]):
        ref_cli.main(argv)
    assert seen == ["flat", "flat", "snapshot"]


def test_env_profile_is_the_former_name():
    assert Env(None, b"", 1).profile == "v2"
    assert Env(None, b"", 1, hint_encoding="flat").profile == "v1"


class OldStyleServer(ModelServer):
    """An adapter written before Env.hint_encoding: it reads env.profile."""

    seen: list = []

    def reset(self, env: Env) -> None:
        OldStyleServer.seen.append(env.profile)
        super().reset(env)


@pytest.mark.parametrize("encoding,profile", [("flat", "v1"), ("snapshot", "v2")])
def test_an_old_style_adapter_reads_profile_through_the_harness(encoding, profile):
    OldStyleServer.seen.clear()
    rc = RunConfig(client="model", server=f"{__name__}:OldStyleServer", hint_encoding=encoding)
    new_session(rc, "pair").close()
    assert OldStyleServer.seen == [profile]


def test_run_config_reads_old_trace_configs():
    old = {"client": "model", "server": "mppx", "profile": "v1"}
    assert RunConfig.from_json(old).hint_encoding == "flat"
    assert RunConfig.from_json(dict(old, profile="v2")).hint_encoding == "snapshot"
    rc = RunConfig(client="model", server="model", hint_encoding="flat")
    assert RunConfig.from_json(rc.to_json()) == rc
