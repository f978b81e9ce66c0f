package io.devicegateway.command;

import java.util.List;
import java.util.Optional;

import io.smallrye.config.ConfigMapping;
import io.smallrye.config.WithDefault;

/** Agent authentication on the gRPC API ({@code gateway.grpc.auth.*}). */
@ConfigMapping(prefix = "gateway.grpc.auth")
public interface GrpcAuthConfig {

    /** Only the {@code local} profile may turn this off; anywhere else the gateway refuses to start. */
    @WithDefault("true")
    boolean enabled();

    /**
     * Comma-separated {@code name:sha256-hex-of-token[:device-id-prefix]} (env {@code GATEWAY_GRPC_AUTH_TOKENS},
     * typically from a Kubernetes Secret). A token with a prefix may only address devices whose id starts with it.
     */
    Optional<List<String>> tokens();
}
