"""What a kubeconfig may make the runner do, decided before the official client loads it.

A kubeconfig can do more than name a server and a credential: a user entry's ``exec`` runs a command while the
config loads, ``auth-provider`` (gcp, azure, oidc) runs ``cmd-path`` or refreshes tokens over the network, and
``tokenFile`` makes the client read a local file and send it as the bearer token. Two sources, two rules:

- a kubeconfig from a secret (``kubeconfig-data``): whoever can change the secret (or, on pull requests, the PR)
  must not get a command run on the runner. ``review(..., secret=True)`` refuses those three keys with a
  ``UsageError`` naming the user entry and the key, unless ``allow_exec`` (the ``allow-exec: true`` input) opts in
  (EKS ``aws eks get-token``, GKE ``gke-gcloud-auth-plugin``); the commands are then logged like a path's.
- a kubeconfig file (``kubeconfig`` path, ``$KUBECONFIG``): behaves like kubectl, so commands run, but each one is
  logged (``log``) before the client loads it.

``secret_values`` lists the secret strings of a kubeconfig (tokens, passwords, client keys, auth-provider tokens,
exec env values) so each can be masked by itself: masking the file line by line leaves the bare token unmasked
and turns lines such as ``kind: Config`` into masks. ``tidy_token`` trims the whitespace kubectl trims from a
token (a ``tokenFile`` ending in a newline), so the header is valid.
"""
from __future__ import annotations

import base64
import binascii
import shlex
from collections.abc import Callable, Iterator

from llmops.errors import InputError, UsageError

RISKY = ("exec", "auth-provider", "tokenFile")
SECRET_KEYS = ("token", "password", "client-key-data")
PROVIDER_SECRETS = ("access-token", "refresh-token", "id-token", "client-secret")
OPT_IN = "allow-exec: true"


def _entries(doc: dict, kind: str) -> list[dict]:
    return [e for e in doc.get(kind) or [] if isinstance(e, dict)]


def _users_in_use(doc: dict, context: str | None) -> list[dict]:
    """The user entries the client may load: the selected context's, or every user when that is unclear."""
    users = _entries(doc, "users")
    name = context or doc.get("current-context")
    ctx = next((c.get("context") for c in _entries(doc, "contexts") if c.get("name") == name), None)
    wanted = ctx.get("user") if isinstance(ctx, dict) else None
    chosen = [u for u in users if u.get("name") == wanted]
    return chosen or users


def _command(user: dict) -> str:
    spec = user.get("exec")
    if isinstance(spec, dict):
        args = [str(spec.get("command", ""))] + [str(a) for a in spec.get("args") or []]
        return shlex.join(args)
    provider = user.get("auth-provider")
    if isinstance(provider, dict):
        cfg = provider.get("config") if isinstance(provider.get("config"), dict) else {}
        cmd = cfg.get("cmd-path")
        extra = f" runs {shlex.join([str(cmd)] + str(cfg.get('cmd-args', '')).split())}" if cmd else ""
        return f"the {provider.get('name', '?')} auth-provider{extra}"
    return ""


def review(doc: dict, *, secret: bool, context: str | None = None, allow_exec: bool = False,
           log: Callable[[str], None] | None = None, label: str = "the kubeconfig") -> None:
    """Refuse (secret without opt-in) or log (otherwise) what the kubeconfig's user entries would run or read."""
    for entry in _users_in_use(doc, context):
        user = entry.get("user")
        if not isinstance(user, dict):
            continue
        name = entry.get("name", "?")
        risky = [key for key in RISKY if user.get(key) not in (None, "", {})]
        if not risky:
            continue
        if secret and not allow_exec:
            what = {"exec": "runs a command on the runner", "auth-provider": "runs an auth-provider plugin",
                    "tokenFile": "reads a local file and sends it as the token"}[risky[0]]
            raise UsageError(f"{label}: user '{name}' has '{risky[0]}', which {what} while the config loads; a "
                             "kubeconfig from a secret may not do that by default",
                             f"store a static token or client certificate in the secret, or set {OPT_IN} on the "
                             "step if the secret is yours and needs it (EKS aws eks get-token, GKE "
                             "gke-gcloud-auth-plugin; see docs/actions/kubectl-promote.md)")
        if log is not None:
            if "exec" in risky or "auth-provider" in risky:
                log(f"{label}: user '{name}' gets its credentials by running: {_command(user)}")
            if "tokenFile" in risky:
                log(f"{label}: user '{name}' reads its token from the file {user['tokenFile']}")


def _walk_secret(user: dict) -> Iterator[str]:
    for key in SECRET_KEYS:
        value = user.get(key)
        if isinstance(value, str) and value.strip():
            yield value.strip()
            if key.endswith("-data"):
                yield from _decoded_lines(value)
    provider = user.get("auth-provider")
    if isinstance(provider, dict) and isinstance(provider.get("config"), dict):
        for key in PROVIDER_SECRETS:
            value = provider["config"].get(key)
            if isinstance(value, str) and value.strip():
                yield value.strip()
    spec = user.get("exec")
    if isinstance(spec, dict):
        for env in spec.get("env") or []:
            if isinstance(env, dict) and isinstance(env.get("value"), str) and len(env["value"].strip()) >= 8:
                yield env["value"].strip()


def _decoded_lines(value: str) -> Iterator[str]:
    """The body lines of a base64 PEM (a client key is also secret once decoded)."""
    try:
        text = base64.b64decode("".join(value.split()), validate=True).decode("ascii")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("-----"):
            yield line


def secret_values(doc: object) -> list[str]:
    """Every secret string in a kubeconfig document, each to be masked on its own (longest first)."""
    if not isinstance(doc, dict):
        return []
    out: set[str] = set()
    for entry in _entries(doc, "users"):
        if isinstance(entry.get("user"), dict):
            out.update(_walk_secret(entry["user"]))
    return sorted(out, key=len, reverse=True)


def tidy_token(configuration: object) -> None:
    """Trim the bearer token the way kubectl does (now and each time the client reloads it from a tokenFile or an
    exec plugin); a token with a line break inside is a clear error."""
    _trim(configuration)
    hook = getattr(configuration, "refresh_api_key_hook", None)
    if callable(hook) and not getattr(hook, "llmops_tidy", False):
        def tidy(cfg: object) -> None:
            hook(cfg)
            tidy_token(cfg)  # the client's hook installs itself again: wrap that one too

        tidy.llmops_tidy = True  # type: ignore[attr-defined]
        configuration.refresh_api_key_hook = tidy  # type: ignore[attr-defined]


def _trim(configuration: object) -> None:
    keys = getattr(configuration, "api_key", None)
    if not isinstance(keys, dict):
        return
    for name, value in list(keys.items()):  # the client keeps "Bearer <token>" under BearerToken
        if not isinstance(value, str):
            continue
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        if any(c in token for c in "\r\n\0"):
            raise InputError("the kubeconfig token contains a line break (its content is not shown)",
                             "store the token on one line (a token file may end with one newline, no more)")
        keys[name] = f"{scheme} {token}" if token else scheme


def mask_secret(text: str | None) -> None:
    """Register each secret value of a kubeconfig secret (YAML or base64 of it) with the runner's masking."""
    import yaml

    from llmops.redact import remember

    if not text or not text.strip():
        return
    doc = None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        pass
    if not isinstance(doc, dict):
        compact = "".join(text.split())
        remember(compact)  # the base64 form is one line: one mask
        try:
            doc = yaml.safe_load(base64.b64decode(compact, validate=True).decode("utf-8"))
        except (binascii.Error, ValueError, UnicodeDecodeError, yaml.YAMLError):
            return
    for value in secret_values(doc):
        remember(value)
