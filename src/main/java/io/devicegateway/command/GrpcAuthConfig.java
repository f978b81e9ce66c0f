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
     * Comma-separated {@code name:sha256-hex-of-token[:device-id-scope]} (env {@code GATEWAY_GRPC_AUTH_TOKENS},
     * typically from a Kubernetes Secret). A scope covers whole id segments ({@code truck}: {@code truck},
     * {@code truck-1}, {@code truck.eu.7}, not {@code trucker-1}); one ending in a separator ({@code truck-}) covers
     * every id starting with it. An empty scope is a startup error; omit it for every device.
     */
    Optional<List<String>> tokens();
}
