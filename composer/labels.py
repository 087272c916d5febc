"""The labels composer puts on every container it creates: how a project finds its own."""

PREFIX = "io.composer."
PROJECT = PREFIX + "project"
SERVICE = PREFIX + "service"
NUMBER = PREFIX + "container-number"
CONFIG_HASH = PREFIX + "config-hash"
IMAGE = PREFIX + "image"  # the image id the container was created from
ONEOFF = PREFIX + "oneoff"  # "True" for `composer run` containers
WORKING_DIR = PREFIX + "project.working-dir"
CONFIG_FILES = PREFIX + "project.config-files"  # comma-separated absolute paths
