"""Finding testers: built-ins, the ``surealived.testers`` entry point group, and ``modules_path``.

Each tester class is validated once, when it is loaded; a tester that fails to load is reported
as a ``TesterLoadError`` naming its file and line, and the others stay usable. A tester that
uses daemon-owned services (``Tester.uses``) is registered as a subclass carrying the registry's
``Services`` as class attributes: each registry (one per daemon) hands out its own.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import sys
import traceback
from dataclasses import dataclass, field

from .config.model import TESTER_ATTRS
from .errors import TesterLoadError
from .services import SERVICE_NAMES, Services
from .tester_api import Tester

ENTRY_POINT_GROUP = "surealived.testers"
BUILTIN: dict[str, str] = {
    "tcp": "builtin_testers.tcp:TcpTester",
    "http": "builtin_testers.http:HttpTester",
    "dns": "builtin_testers.dns:DnsTester",
    "exec": "builtin_testers.exec:ExecTester",
    "none": "builtin_testers.none:NoneTester",
    "lua": "builtin_testers.lua:LuaTester",
}
_COMMON = {a.name for a in TESTER_ATTRS}
TRANSPORTS = ("tcp", "udp", "exec", "none")


@dataclass
class Registry:
    """Loaded testers by name (aliases included), where each came from, and load failures."""

    testers: dict[str, type[Tester]] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    errors: list[TesterLoadError] = field(default_factory=list)
    services: Services = field(default_factory=Services)

    def get(self, proto: str) -> type[Tester] | None:
        return self.testers.get(proto) or self.testers.get(proto.lower())

    def add(self, cls: type[Tester], origin: str) -> None:
        problem = _verify(cls)
        if problem:
            self.errors.append(TesterLoadError(getattr(cls, "name", "?") or "?",
                                               _where(cls, origin), problem))
            return
        if cls.uses:
            cls = bind_services(cls, self.services)
        for name in (cls.name, *cls.aliases):
            self.testers[name] = cls
        self.origins[cls.name] = origin

    @property
    def names(self) -> list[str]:
        return sorted(self.origins)


def bind_services(cls: type[Tester], services: Services) -> type[Tester]:
    """``cls`` as the engine gets it from a registry: a subclass of the same name with each
    service ``cls.uses`` names as a class attribute (``self.lua_scripts``, and in the class
    method ``validate``)."""
    attrs = {name: getattr(services, name) for name in cls.uses}
    attrs.update(__module__=cls.__module__, __qualname__=cls.__qualname__, __doc__=cls.__doc__)
    return type(cls.__name__, (cls,), attrs)


def _where(obj: object, fallback: str) -> str:
    try:
        file = inspect.getsourcefile(obj)  # type: ignore[arg-type]
        line = inspect.getsourcelines(obj)[1]  # type: ignore[arg-type]
    except (TypeError, OSError):
        return fallback
    return f"{file}:{line}"


def _verify(cls: type[Tester]) -> str | None:
    if not (inspect.isclass(cls) and issubclass(cls, Tester)):
        return "is not a subclass of surealived.tester_api.Tester"
    if not cls.name:
        return "has no name"
    if cls.transport not in TRANSPORTS:
        return f"transport {cls.transport!r} is not one of {', '.join(TRANSPORTS)}"
    if not inspect.iscoroutinefunction(cls.check):
        return "check() must be an async method"
    unknown = [name for name in cls.uses if name not in SERVICE_NAMES]
    if unknown:
        return (f"uses unknown services: {', '.join(map(repr, unknown))} "
                f"(valid: {', '.join(SERVICE_NAMES)})")
    clash = sorted(_COMMON & {a.name for a in cls.attributes})
    if clash:
        return f"declares attributes that every tester already has: {', '.join(clash)}"
    return None


def _import_path(spec: str) -> type[Tester]:
    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    cls: type[Tester] = getattr(module, attr)
    return cls


def _failure_origin(exc: BaseException, fallback: str) -> str:
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else fallback


def _load_file(registry: Registry, path: str) -> None:
    module_name = "surealived_module_" + os.path.splitext(os.path.basename(path))[0]
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except Exception as exc:
        registry.errors.append(TesterLoadError(os.path.basename(path), _failure_origin(exc, path),
                                               f"failed to load: {exc!r}"))
        return
    found = [obj for obj in vars(module).values()
             if inspect.isclass(obj) and issubclass(obj, Tester) and obj is not Tester
             and obj.__module__ == module_name]
    if not found:
        registry.errors.append(TesterLoadError(os.path.basename(path), path,
                                               "defines no Tester subclass"))
    for cls in found:
        registry.add(cls, path)


def load_testers(modules: tuple[str, ...] = ("all",), modules_path: str | None = None,
                 services: Services | None = None) -> Registry:
    """Load built-ins, entry points and ``modules_path/*.py``; keep those ``modules`` selects.
    The testers get ``services`` (default: new ones with the default settings)."""
    registry = Registry(services=services or Services())
    for name, spec in BUILTIN.items():
        try:
            registry.add(_import_path(spec), f"builtin ({spec})")
        except Exception as exc:
            registry.errors.append(TesterLoadError(name, _failure_origin(exc, spec),
                                                   f"failed to load: {exc!r}"))
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = entry.dist.name if entry.dist else "?"
        try:
            registry.add(entry.load(), f"entry point {entry.name} ({dist})")
        except Exception as exc:
            registry.errors.append(TesterLoadError(entry.name, _failure_origin(exc, entry.value),
                                                   f"failed to load: {exc!r}"))
    if modules_path and os.path.isdir(modules_path):
        for file in sorted(os.listdir(modules_path)):
            if file.endswith(".py") and not file.startswith("_"):
                _load_file(registry, os.path.join(modules_path, file))
    if "all" not in modules:
        wanted = set(modules) | {"none"}
        for name in set(registry.origins) - wanted:
            cls = registry.testers[name]
            for alias in (cls.name, *cls.aliases):
                registry.testers.pop(alias, None)
            del registry.origins[name]
        for name in sorted(wanted - set(registry.origins)):
            if not any(e.name == name for e in registry.errors):
                registry.errors.append(TesterLoadError(name, "surealived.cfg modules",
                                                       "no such tester"))
    return registry
