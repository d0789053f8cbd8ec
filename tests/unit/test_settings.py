"""Precedence: defaults < config.toml < LLMCTL_CONFIG file < LLMCTL_* env < flags; clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmctl.app.paths import resolve_paths
from llmctl.app.settings import load_settings
from llmctl.catalog.errors import ConfigError


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_llmctl_home_relocates_every_path(llmctl_home: Path) -> None:
    paths = resolve_paths()
    for value in paths.as_dict().values():
        assert Path(value).is_relative_to(llmctl_home)
    assert not llmctl_home.exists()  # nothing is created by resolving


def test_defaults() -> None:
    s = load_settings(resolve_paths())
    assert (s.server.host, s.server.port, s.server.api_key) == ("127.0.0.1", 7878, None)


def test_precedence(tmp_path: Path, monkeypatch) -> None:
    paths = resolve_paths()
    _write(paths.config_file, "[server]\nport = 8001\nmax_body_bytes = 4096\n[backends]\nctx_size = 1024\n"
                              "parallel = 3\nthreads = 3\n")
    assert load_settings(paths).server.port == 8001
    extra = _write(tmp_path / "extra.toml", "[server]\nport = 8002\n[backends]\nctx_size = 2048\n")
    monkeypatch.setenv("LLMCTL_CONFIG", str(extra))
    s = load_settings(paths)
    assert (s.server.port, s.backends.ctx_size, s.server.max_body_bytes) == (8002, 2048, 4096)
    monkeypatch.setenv("LLMCTL_SERVER__PORT", "8003")
    monkeypatch.setenv("LLMCTL_BACKENDS__PARALLEL", "5")
    s = load_settings(paths)
    assert (s.server.port, s.backends.parallel, s.backends.threads) == (8003, 5, 3)
    s = load_settings(paths, {"server.port": 8004, "backends.threads": None})
    assert (s.server.port, s.backends.threads) == (8004, 3)  # an unset flag does not override


@pytest.mark.parametrize(
    ("text", "match"),
    [("[server]\nport = 'x'\n", "server.port"), ("[server\n", "cannot be parsed"),
     ("[server]\nport = 70000\n", "server.port"), ("[nonsense]\na = 1\n", "nonsense")],
)
def test_bad_config_is_a_clear_error(text: str, match: str) -> None:
    paths = resolve_paths()
    _write(paths.config_file, text)
    with pytest.raises(ConfigError, match=match) as err:
        load_settings(paths)
    assert str(paths.config_file) in err.value.message


def test_missing_llmctl_config_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LLMCTL_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="not a file"):
        load_settings(resolve_paths())


def test_a_bad_flag_is_named_as_the_flag_not_as_config() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(resolve_paths(), {"server.port": 99999, "backends.ctx_size": None})
    assert err.value.title == "--port: input should be less than or equal to 65535"
    assert "config.toml" not in str(err.value) and "command line" in err.value.message


def test_a_bad_flag_and_a_bad_config_value_are_both_named(monkeypatch) -> None:
    monkeypatch.setenv("LLMCTL_BACKENDS__PARALLEL", "0")
    with pytest.raises(ConfigError) as err:
        load_settings(resolve_paths(), {"backends.ctx_size": 5}, {"backends.ctx_size": "--ctx-size"})
    assert "--ctx-size: input should be greater than or equal to 256" in err.value.message
    assert "backends.parallel: Input should be greater than or equal to 1" in err.value.message
    assert "LLMCTL_*" in err.value.message


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("localhost", True), ("LOCALHOST", True), ("::1", True),
     ("[::1]", True), ("::ffff:127.0.0.1", True), ("127.evil.com", False), ("127.0.0.1.evil.com", False),
     ("0.0.0.0", False), ("::", False), ("192.168.1.2", False), ("localhost.evil.com", False), ("", False)],
)
def test_is_loopback_parses_the_address(host: str, loopback: bool) -> None:
    from llmctl.app.settings import is_loopback

    assert is_loopback(host) is loopback


def test_ollama_engine_settings_and_model_ttl(llmctl_home: Path, monkeypatch) -> None:
    from llmctl.app.ollama import attach_url, make_server, spawn_models_dir
    from llmctl.runtimes.process import RestartPolicy
    from llmctl.runtimes.state_file import StateFile

    paths = resolve_paths()
    s = load_settings(paths)
    assert (s.engines.ollama.mode, s.engines.ollama.host) == ("attach", None)
    monkeypatch.setenv("OLLAMA_HOST", "0.0.0.0:11500")
    assert attach_url(s) == "http://127.0.0.1:11500"  # as Ollama reads OLLAMA_HOST; listen-all → loopback
    _write(paths.config_file, '[engines.ollama]\nmode = "spawn"\nhost = "http://127.0.0.1:7000"\n\n'
                              '[models."ollama/smollm2:135m"]\nttl = 600\n')
    s = load_settings(paths)
    assert attach_url(s) == "http://127.0.0.1:7000" and s.models["ollama/smollm2:135m"].ttl == 600
    assert spawn_models_dir(s, paths) == paths.data_dir / "ollama"
    monkeypatch.setenv("LLMCTL_ENGINES__OLLAMA__MODE", "off")
    off = load_settings(paths)
    assert make_server(off, paths, state=StateFile(paths.backends_state), policy=RestartPolicy()) is None
    monkeypatch.setenv("LLMCTL_ENGINES__OLLAMA__MODE", "sometimes")
    with pytest.raises(ConfigError, match=r"engines\.ollama\.mode"):
        load_settings(paths)


def test_named_keys_read_their_secret_from_the_environment(monkeypatch) -> None:
    from llmctl.app.controller.server import api_keys
    from llmctl.app.settings import ResponseCacheSettings

    paths = resolve_paths()
    _write(paths.config_file, '[server]\napi_key = "old-single-key"\n'
                              '[[server.keys]]\nname = "alice"\nkey_env = "ALICE_KEY"\nrequests_per_minute = 60\n'
                              '[[server.keys]]\nname = "bob"\nkey = "bob-in-the-file"\ntokens_per_minute = 1000\n'
                              '[server.response_cache]\nenabled = true\nmax_bytes = "1MiB"\n')
    s = load_settings(paths)
    assert s.server.response_cache.enabled and s.server.response_cache.max_bytes == 1 << 20
    assert not ResponseCacheSettings().enabled  # off by default
    with pytest.raises(ConfigError, match="ALICE_KEY is not set"):
        api_keys(s)
    monkeypatch.setenv("ALICE_KEY", "alice-from-env")
    assert api_keys(s) == [("default", "old-single-key", None, None, "admin"),
                           ("alice", "alice-from-env", 60, None, "inference"),
                           ("bob", "bob-in-the-file", None, 1000, "inference")]
    assert s.server.needs_key and s.server.client_key() == "old-single-key"
    monkeypatch.setenv("ALICE_KEY", "bob-in-the-file")
    with pytest.raises(ConfigError, match="same secret"):
        api_keys(s)


@pytest.mark.parametrize(("keys", "match"), [
    ('name = "a"\nkey = "k-123456"\nkey_env = "K"\n', "exactly one of key or key_env"),
    ('name = "a"\n', "exactly one of key or key_env"),
    ('name = "default"\nkey_env = "K"\n', "server.api_key"),
    ('name = "a b"\nkey_env = "K"\n', "server.keys.0.name"),
    ('name = "a"\nkey_env = "K"\nrequests_per_minute = 0\n', "requests_per_minute"),
])
def test_bad_keys_are_named(keys: str, match: str) -> None:
    paths = resolve_paths()
    _write(paths.config_file, f"[[server.keys]]\n{keys}")
    with pytest.raises(ConfigError, match=match):
        load_settings(paths)


def test_key_names_are_unique() -> None:
    paths = resolve_paths()
    one = '[[server.keys]]\nname = "a"\nkey_env = "A"\n'
    _write(paths.config_file, one + one)
    with pytest.raises(ConfigError, match="a appears more than once"):
        load_settings(paths)


def test_an_inference_key_whose_secret_is_not_here_is_not_handed_to_an_app(monkeypatch) -> None:
    """`llmctl launch` hands an app an inference key; one whose key_env is unset where launch runs does not count,
    so the app gets the admin key, and launch says so (it asks `inference_key()`)."""
    from llmctl.app.settings import ServerSettings

    monkeypatch.delenv("LLMCTL_TEST_UNSET_KEY", raising=False)
    server = ServerSettings(api_key="admin-secret", keys=[{"name": "app", "key_env": "LLMCTL_TEST_UNSET_KEY"}])
    assert server.inference_key() is None and server.app_key() == "admin-secret"
    monkeypatch.setenv("LLMCTL_TEST_UNSET_KEY", "app-secret")
    assert server.inference_key() == server.app_key() == "app-secret"
