package io.devicegateway.testing;

import java.util.HashMap;
import java.util.Map;

import io.quarkus.test.common.QuarkusTestResourceLifecycleManager;

/**
 * Quarkus test resource: one set of real servers per test JVM, shared by every {@code @QuarkusTest} that
 * uses it (started on first use, stopped by the JVM shutdown hook).
 */
public class SharedServers implements QuarkusTestResourceLifecycleManager {

    private static LocalServers servers;

    public static synchronized LocalServers get() {
        if (servers == null) {
            servers = LocalServers.start("shared");
        }
        return servers;
    }

    @Override
    public Map<String, String> start() {
        Map<String, String> config = new HashMap<>(get().gatewayConfig());
        // no fixed client id: the suite runs the default, a client id leased from Redis
        config.put("gateway.grpc.auth.tokens", Agents.tokensConfig());
        return config;
    }

    @Override
    public void stop() {
        // kept for the next test class; the shutdown hook stops them
    }
}
