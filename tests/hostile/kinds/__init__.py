"""The case generators, one module per kind of hostile input."""


def generators():
    from . import artifacts, bombs, bytes_, external, inputs, structure, types

    return [bytes_.cases, structure.cases, types.cases, external.cases, bombs.cases, inputs.cases,
            artifacts.cases]
