from tests.actions import problem


def test_healthz_answers_while_the_process_lives(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"


def test_readyz_checks_the_database_and_redis_when_configured(client, leg):
    response = client.get("/readyz")
    assert response.status_code == 200
    checks = response.get_json()["checks"]
    assert checks["database"] is True
    if leg == "postgres":
        assert checks["redis"] is True


def test_readyz_is_503_when_the_database_does_not_answer(make_app):
    from tests.servers import free_port

    app = make_app(DATABASE_URL=f"postgresql://nobody@127.0.0.1:{free_port()}/none")
    response = app.test_client().get("/readyz")
    body = problem(response, 503, "service_unavailable")
    assert "database" in body["detail"]
    assert "Retry-After" in response.headers


def test_a_request_while_the_database_is_down_is_503_not_500(make_app):
    from tests.actions import PASSWORD
    from tests.servers import free_port

    app = make_app(DATABASE_URL=f"postgresql://nobody@127.0.0.1:{free_port()}/none")
    response = app.test_client().post("/auth/login", json={"email": "a@example.com", "password": PASSWORD})
    problem(response, 503, "service_unavailable")
    assert response.headers["Retry-After"] == "5"


def test_readyz_answers_within_its_time_limit_when_the_database_hangs(make_app):
    """A server that accepts the connection but never answers: 503 after about a second."""
    import socket
    import threading

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    accepted = []
    stop = threading.Event()

    def hold():
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(silent.accept()[0])
            except OSError:
                pass

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    try:
        app = make_app(DATABASE_URL=f"postgresql://nobody@127.0.0.1:{silent.getsockname()[1]}/none")
        problem(app.test_client().get("/readyz"), 503, "service_unavailable")
    finally:
        stop.set()
        holder.join()
        for conn in accepted:
            conn.close()
        silent.close()
