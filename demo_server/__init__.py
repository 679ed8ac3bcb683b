"""SPARTAN Edge demo server: serves backbone bundles and task memories to devices (docs/server.md).

    flask --app demo_server run                     # development
    gunicorn -w 2 'demo_server:create_app()'        # real use
"""

from __future__ import annotations

import os

from flask import Flask

from . import db, errors, limits
from .config import ENV_PREFIX, load_config


def create_app(config: dict | None = None) -> Flask:
    """Application factory. `config` overrides file/env settings (tests pass their instance folder here)."""
    instance = (config or {}).get("INSTANCE_PATH") or os.environ.get(ENV_PREFIX + "INSTANCE")
    app = Flask(__name__, instance_path=os.path.abspath(instance) if instance else None,
                instance_relative_config=True, static_folder=None)
    load_config(app, {k: v for k, v in (config or {}).items() if k != "INSTANCE_PATH"})
    os.makedirs(app.instance_path, exist_ok=True)
    db.init_app(app)
    errors.init_app(app)
    limits.init_app(app)
    if app.config["TRUSTED_PROXIES"]:  # the client's address for the wrong-token limit (auth.py), not the proxy's
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)

    from .api import bp as api_bp
    from .cli import gc_command, publish_command
    from .console import bp as console_bp
    from .publish import bp as publish_bp

    app.register_blueprint(api_bp)
    app.register_blueprint(console_bp)
    app.register_blueprint(publish_bp)
    app.cli.add_command(publish_command)
    app.cli.add_command(gc_command)
    return app
