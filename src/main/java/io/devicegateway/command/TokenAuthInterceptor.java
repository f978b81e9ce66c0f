package io.devicegateway.command;

import java.util.Optional;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.event.Observes;

import org.jboss.logging.Logger;

import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import io.quarkus.grpc.GlobalInterceptor;
import io.quarkus.runtime.StartupEvent;
import io.quarkus.runtime.configuration.ConfigUtils;

/**
 * {@code authorization: Bearer <token>} on every DeviceGateway call. Unknown or missing token:
 * UNAUTHENTICATED. The agent goes into the gRPC context; the service checks its device-id scope
 * (PERMISSION_DENIED). Reflection and health stay open: they reveal no device data.
 */
@GlobalInterceptor
@ApplicationScoped
public class TokenAuthInterceptor implements ServerInterceptor {

    static final Context.Key<AgentTokens.Agent> AGENT = Context.key("device-gateway-agent");
    static final AgentTokens.Agent LOCAL_AGENT = new AgentTokens.Agent("local-unauthenticated", "");
    private static final Logger LOG = Logger.getLogger(TokenAuthInterceptor.class);
    private static final Metadata.Key<String> AUTHORIZATION = Metadata.Key.of("authorization",
            Metadata.ASCII_STRING_MARSHALLER);

    private final boolean enabled;
    private final AgentTokens tokens;

    TokenAuthInterceptor(GrpcAuthConfig config) {
        this.enabled = config.enabled();
        this.tokens = AgentTokens.parse(config.tokens().orElse(java.util.List.of()));
    }

    void check(@Observes StartupEvent event) {
        if (!enabled) {
            if (!ConfigUtils.getProfiles().contains("local")) {
                throw new IllegalStateException("gateway.grpc.auth.enabled=false is only allowed in the local profile");
            }
            LOG.warn("gRPC authentication is OFF (local profile): any caller may send commands to any device");
        } else if (tokens.size() == 0) {
            LOG.warn("gRPC authentication is on but gateway.grpc.auth.tokens is empty: every call is refused");
        } else {
            LOG.infof("gRPC authentication on, %d agent token(s) configured", tokens.size());
        }
    }

    /**
     * The authenticated agent of the current gRPC call, for any {@code devicegateway.*} service (the registry
     * checks the same device-id scopes), or null outside a call.
     */
    public static AgentTokens.Agent currentAgent() {
        return AGENT.get();
    }

    @Override
    public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
            ServerCallHandler<Q, R> next) {
        String service = call.getMethodDescriptor().getServiceName();
        if (service == null || !service.startsWith("devicegateway.")) {
            return next.startCall(call, headers);
        }
        if (!enabled) {
            return Contexts.interceptCall(Context.current().withValue(AGENT, LOCAL_AGENT), call, headers, next);
        }
        String header = headers.get(AUTHORIZATION);
        if (header == null || !header.regionMatches(true, 0, "Bearer ", 0, 7)) {
            return refuse(call, "missing bearer token (authorization: Bearer <token>)");
        }
        Optional<AgentTokens.Agent> agent = tokens.authenticate(header.substring(7).trim());
        if (agent.isEmpty()) {
            return refuse(call, "unknown token");
        }
        return Contexts.interceptCall(Context.current().withValue(AGENT, agent.get()), call, headers, next);
    }

    private static <Q, R> ServerCall.Listener<Q> refuse(ServerCall<Q, R> call, String why) {
        call.close(Status.UNAUTHENTICATED.withDescription(why), new Metadata());
        return new ServerCall.Listener<>() {
        };
    }
}
