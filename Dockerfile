# limefort in a container: one sync pass per run (what a Kubernetes CronJob or `docker run`
# from a scheduler starts). Config and state are volumes:
#   docker run --rm -v /srv/acme/conf:/etc/limefort:ro -v acme-state:/var/lib/limefort \
#     --env-file /srv/acme/secrets.env limefort:0.1.0
# The image holds only the package and its dependencies, pinned by constraints.txt; the sandbox
# servers (limefort_sandbox, for tests and `make demo`) are not copied in.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY setup.cfg pyproject.toml README.md constraints.txt ./
COPY limefort ./limefort
# A virtualenv so the runtime stage copies exactly what was installed, nothing of pip's cache;
# made without pip, and filled by the base image's pip from outside; the pip sqlite-utils
# requires (for its own `install` command, which limefort never runs) is removed again.
RUN python -m venv --without-pip /opt/limefort \
    && python -m pip --python /opt/limefort/bin/python install --no-cache-dir \
        --constraint constraints.txt . \
    && python -m pip --python /opt/limefort/bin/python uninstall --yes pip

FROM python:3.11-slim-bookworm
COPY --from=build /opt/limefort /opt/limefort
# No installer at run time: the base image's bundled pip and setuptools (with advisories of
# their own) are removed, as nothing in a pass installs anything. A fixed uid/gid, so a
# volume's owner and a Kubernetes securityContext can name it.
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
    && groupadd --system --gid 10001 limefort \
    && useradd --system --uid 10001 --gid limefort --home-dir /var/lib/limefort \
        --no-create-home --shell /usr/sbin/nologin limefort \
    && install -d -o limefort -g limefort -m 0700 /var/lib/limefort \
    && install -d -o root -g limefort -m 0750 /etc/limefort
ENV PATH=/opt/limefort/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LIMEFORT_CONFIG=/etc/limefort/limefort.toml \
    LIMEFORT_STATE_PATH=/var/lib/limefort/limefort.db
# /etc/limefort: limefort.toml (secrets better as LIMEFORT_* environment). /var/lib/limefort:
# the state file and its lock; it must outlive the container. LIMEFORT_STATE_PATH above wins
# over the config's [state] path, so the state always lands on the volume.
VOLUME ["/etc/limefort", "/var/lib/limefort"]
USER 10001:10001
WORKDIR /var/lib/limefort
ENTRYPOINT ["limefort"]
CMD ["--log-format", "json", "sync"]
