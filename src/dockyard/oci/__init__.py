"""The OCI image model: digests, media types, descriptors, manifests, indexes, configs."""
