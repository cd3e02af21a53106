"""Reading YAML the way a case author means it, and finding a value's line again.

PyYAML implements YAML 1.1, where `1e-5` is a string; case authors write YAML 1.2,
where it is a float. `YamlLoader` reads numbers the 1.2 way and refuses literals
that would silently overflow to infinity or underflow to zero in float64, because
a case that does not hold the number its author wrote tests something else.

Every error message names a line, so the node tree is kept beside the data:
`locate` walks it with the same keys and indexes as the data, and `duplicate_keys`
finds the repeated key YAML itself would silently drop.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["FLOAT_RE", "YamlLoader", "duplicate_keys", "locate"]

_FLOAT_TAG = "tag:yaml.org,2002:float"
# YAML 1.2 floats: PyYAML (YAML 1.1) reads 1e-5 and 1.0e5 as strings, a classic trap.
# A dot or an exponent is required so that plain integers stay integers.
FLOAT_RE = re.compile(r"""^(?:
    [-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?
  | [-+]?[0-9]+[eE][-+]?[0-9]+
  | [-+]?\.(?:inf|Inf|INF)
  | \.(?:nan|NaN|NAN)
)$""", re.X)


class YamlLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 floats and literals checked against float64's range."""


YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, FLOAT_RE if tag == _FLOAT_TAG else rx) for tag, rx in resolvers]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_float(loader: yaml.SafeLoader, node: ScalarNode) -> float:
    text = str(loader.construct_scalar(node))
    t = text.replace("_", "").strip().lower()
    sign = -1.0 if t.startswith("-") else 1.0
    body = t.lstrip("+-")
    if body == ".inf":
        return sign * math.inf
    if body == ".nan":
        return math.nan
    try:
        value = float(t)
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None, None, f"'{text}' is not a number YAML can read", node.start_mark) from None
    if math.isinf(value):
        raise yaml.constructor.ConstructorError(
            None, None, f"the number {text} is beyond float64's range (it would silently become "
            "infinity); write .inf or -.inf if infinity is meant", node.start_mark)
    mantissa = re.split(r"e", body)[0]
    if value == 0.0 and re.search(r"[1-9]", mantissa):
        raise yaml.constructor.ConstructorError(
            None, None, f"the number {text} is below float64's smallest subnormal (it would "
            "silently become 0); write 0.0 if zero is meant, or 5e-324 for the smallest "
            "subnormal", node.start_mark)
    return value


YamlLoader.add_constructor(_FLOAT_TAG, _construct_float)


def locate(root: Node | None, where: Sequence[Any]) -> tuple[Node | None, Node | None]:
    """The node at `where` (keys and indexes) and the key node that led to it.

    Stops at the deepest node that exists, so an error about a missing key points at
    the mapping that lacks it.
    """
    node, key_node = root, None
    for part in where:
        if isinstance(node, MappingNode):
            found = None
            for k, v in node.value:  # last one wins, as in the constructor
                if isinstance(k, ScalarNode) and k.value == str(part):
                    found = (k, v)
            if found is None:
                break
            key_node, node = found
        elif isinstance(node, SequenceNode) and isinstance(part, int) and \
                0 <= part < len(node.value):
            node, key_node = node.value[part], None
        else:
            break
    return node, key_node


def duplicate_keys(root: Node | None) -> tuple[ScalarNode, ScalarNode] | None:
    """The first key that appears twice in one mapping (YAML would keep only the last)."""
    stack, visited = [root], set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, MappingNode):
            keys: dict[str, ScalarNode] = {}
            for k, v in node.value:
                if isinstance(k, ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    if k.value in keys:
                        return keys[k.value], k
                    keys[k.value] = k
                stack.append(v)
        elif isinstance(node, SequenceNode):
            stack.extend(reversed(node.value))
    return None
