"""TLS material: self-signed generation, loading, reload."""

import os
import stat

from cryptography import x509

from mailsrv import tls


def test_self_signed_made_once_and_names_loopback(tmp_path):
    cert, key = tls.resolve_paths(None, None, str(tmp_path), "mail.test")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    c = x509.load_pem_x509_certificate(open(cert, "rb").read())
    san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "mail.test"} <= set(san.get_values_for_type(x509.DNSName))
    assert "127.0.0.1" in {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    before = open(cert, "rb").read()
    assert tls.resolve_paths(None, None, str(tmp_path), "mail.test") == (cert, key)
    assert open(cert, "rb").read() == before


def test_context_loads_and_reloads(tmp_path):
    cert, key = tls.resolve_paths(None, None, str(tmp_path), "localhost")
    ctx = tls.ReloadableContext(cert, key)
    assert ctx.getContext() is not None
    tls.make_self_signed(cert, key, "other")
    ctx.reload()
    assert ctx.getContext() is not None


def test_configured_pair_is_used_as_is(tmp_path):
    assert tls.resolve_paths("/a.pem", "/b.pem", str(tmp_path), "x") == ("/a.pem", "/b.pem")
    assert tls.resolve_paths("/both.pem", None, str(tmp_path), "x") == ("/both.pem", "/both.pem")
    assert not os.path.exists(tmp_path / "tls")
