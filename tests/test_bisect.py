

def test_a_model_that_fails_to_run_does_not_agree(monkeypatch):
    from ember.errors import EmberRuntimeError
    from ember.runtime.module import Module

    def fail(self, feeds):
        raise EmberRuntimeError("index 9 out of range")

    monkeypatch.setattr(Module, "run", fail)
    r = bisect(tiny_cnn())
    assert not r.agrees and "out of range" in r.run_error and not r.kernels
    assert len(r.passes) > 5 and r.first_pass is None
    assert "failed to run" in str(r)
