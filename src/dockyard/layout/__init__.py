"""Image homes on disk: OCI layout directories, oci-archive and docker-archive files."""
