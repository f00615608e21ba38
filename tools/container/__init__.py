"""The container side of the gateway.

In the image (the Dockerfile copies ``tools/``):
  ``entrypoint``  every gateway container's entry point: the stand-ins' settings, start checks, then the command
  ``standin``     a compose stand-in service: serves the sandbox provider or the GitLab stand-in when needed
  ``health``      the image's HEALTHCHECK, for whichever role the container runs

On the host (``make test-container``):
  ``engine``      a Docker engine with Compose v2: found, or provisioned from Debian's packages
  ``base_image``  a local Debian base image made with debootstrap, where no registry is reachable
  ``__main__``    ``python -m tools.container test``: provision, build, run tests/container, stop what it started
"""
