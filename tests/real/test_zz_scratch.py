from .test_auth_tls_proxy import *  # noqa

def test_show(user, tinyproxy, danted, basic_registry, images, ca) -> None:
    p = user.pull([f"{basic_registry.host}/{images.private}"], "--proxy", danted.url, "--creds", f"{basic_registry.host}={USER}:{PASSWORD}")
    print(p.output)
    bad = tinyproxy.url.replace(PROXY_PASSWORD, "wrong")
    p = user.pull([f"{basic_registry.host}/{images.private}"], "--proxy", bad, "--ca-cert", str(ca.certificate))
    print(p.output)
    (user.home / "bad.pem").write_text("x")
    p = user.pull([f"{basic_registry.host}/{images.private}"], "--ca-cert", str(user.home / "bad.pem"))
    print(p.code, p.output)
    user.write_json(".docker/config.json", {"auths": {"x": {"auth": "!!"}}})
    p = user.pull([f"{basic_registry.host}/{images.private}"])
    print(p.code, p.output)
