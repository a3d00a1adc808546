"""The runtime's side, for a conflist, as libcni does it (spec section 3):
for the tests, and for people who want to attach a netns without a runtime.

`ipvlan-ip conflist ADD|CHECK|DEL FILE --netns PATH --ifname NAME --container-id ID`
injects `name` and `cniVersion` into each plugin's config, chains `prevResult`
through the plugins in order for ADD, runs DEL in reverse order, and caches the
final ADD result (as libcni does, under /var/lib/cni/results) for CHECK and DEL.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..environment import CniEnv
from ..errors import DECODING_FAILURE, INCOMPATIBLE_VERSION, INVALID_CONFIG, CniError
from ..ipam import plugin_error
from ..versions import version_tuple

DEFAULT_CACHE = "/var/lib/cni/results"


class Conflist:
    def __init__(self, data: dict, cni_path: tuple[str, ...], cache_dir: str = DEFAULT_CACHE):
        if not isinstance(data, dict) or not isinstance(data.get("plugins"), list) or not data["plugins"]:
            raise CniError(INVALID_CONFIG, "a conflist needs a non-empty \"plugins\" list")
        self.name = data.get("name", "")
        self.version = data.get("cniVersion", "1.0.0")
        self.plugins = data["plugins"]
        self.disable_check = data.get("disableCheck", False)
        self.cni_path, self.cache_dir = cni_path, Path(cache_dir)

    def add(self, run, env: CniEnv) -> dict:
        result: dict | None = None
        for plugin in self.plugins:
            result = self._call(run, env, "ADD", plugin, result)
        assert result is not None   # __init__ refuses an empty list, and _call an ADD without a result
        self._cache(env).parent.mkdir(parents=True, exist_ok=True)
        self._cache(env).write_text(json.dumps({"kind": "cniCacheV1", "containerId": env.container_id,
                                                "ifName": env.ifname, "networkName": self.name,
                                                "result": result}))
        return result

    def check(self, run, env: CniEnv) -> None:
        if version_tuple(self.version) < (0, 4, 0):
            raise CniError(INCOMPATIBLE_VERSION, f"CHECK needs cniVersion 0.4.0 or later, not {self.version}")
        if self.disable_check:
            return
        cached = self._cached(env)
        if cached is None:
            raise CniError(INVALID_CONFIG, f"no cached ADD result for {env.container_id}/{env.ifname}")
        for plugin in self.plugins:
            self._call(run, env, "CHECK", plugin, cached)

    def delete(self, run, env: CniEnv) -> None:
        cached = self._cached(env)
        for plugin in reversed(self.plugins):
            self._call(run, env, "DEL", plugin, cached)
        self._cache(env).unlink(missing_ok=True)

    def _call(self, run, env: CniEnv, command: str, plugin: dict, prev: dict | None) -> dict | None:
        conf = {k: v for k, v in plugin.items() if k != "capabilities"}
        conf.update(name=self.name, cniVersion=self.version)
        if prev is not None and version_tuple(self.version) >= (0, 3, 0):
            conf["prevResult"] = prev
        path = run.find_plugin(plugin.get("type", ""), self.cni_path)
        child_env = {**os.environ, **env.raw, "CNI_COMMAND": command, "CNI_CONTAINERID": env.container_id,
                     "CNI_NETNS": env.netns, "CNI_IFNAME": env.ifname, "CNI_PATH": ":".join(self.cni_path)}
        code, out = run.run_plugin(path, child_env, json.dumps(conf).encode())
        if code:
            raise plugin_error(out, code, f"plugin {plugin['type']!r}", command)
        if command != "ADD":
            return None
        try:
            result = json.loads(out)
        except ValueError:
            result = None
        if not isinstance(result, dict):
            raise CniError(DECODING_FAILURE, f"plugin {plugin['type']!r} printed no result object on ADD: "
                           f"{out[:200]!r}")
        return result

    def _cache(self, env: CniEnv) -> Path:
        return self.cache_dir / f"{self.name}-{env.container_id}-{env.ifname}"

    def _cached(self, env: CniEnv) -> dict | None:
        try:
            return json.loads(self._cache(env).read_text())["result"]
        except (OSError, ValueError, KeyError):
            return None
