package io.devicegateway.command;

import java.util.concurrent.TimeUnit;

import io.devicegateway.contract.DeviceIds;
import io.devicegateway.session.SessionStore;
import io.devicegateway.v1.DeviceGateway;
import io.devicegateway.v1.DeviceSession;
import io.devicegateway.v1.GetSessionRequest;
import io.devicegateway.v1.SendEventRequest;
import io.devicegateway.v1.SendEventResponse;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.quarkus.grpc.GrpcService;
import io.smallrye.mutiny.Uni;
import io.vertx.core.Future;

/** The gRPC API ({@code devicegateway.v1.DeviceGateway}), served on the HTTP port. */
@GrpcService
public class DeviceGatewayService implements DeviceGateway {

    private final CommandRouter router;
    private final SessionStore sessions;
    private final CommandResults results;

    DeviceGatewayService(CommandRouter router, SessionStore sessions, CommandResults results) {
        this.router = router;
        this.sessions = sessions;
        this.results = results;
    }

    @Override
    public Uni<SendEventResponse> sendEvent(SendEventRequest request) {
        long start = System.nanoTime();
        AgentTokens.Agent agent = TokenAuthInterceptor.AGENT.get();
        SendEventRequest valid;
        try {
            valid = router.validate(request);
            permit(agent, valid.getDeviceId());
            router.checkAccepting();
        } catch (StatusRuntimeException e) {
            router.rejected(request, "grpc", e);
            return Uni.createFrom().failure(e);
        }
        return uni(router.send(valid, "grpc")).onTermination()
                .invoke(() -> results.sendEventLatency.record(System.nanoTime() - start, TimeUnit.NANOSECONDS));
    }

    @Override
    public Uni<DeviceSession> getSession(GetSessionRequest request) {
        String device = request.getDeviceId();
        if (!DeviceIds.isValid(device)) {
            return Uni.createFrom().failure(
                    Status.INVALID_ARGUMENT.withDescription("device_id must match [A-Za-z0-9._:-]{1,128}")
                            .asRuntimeException());
        }
        try {
            permit(TokenAuthInterceptor.AGENT.get(), device);
        } catch (StatusRuntimeException e) {
            return Uni.createFrom().failure(e);
        }
        Future<DeviceSession> session = router.knownSession(device)
                .compose(s -> sessions.queuedCommands(device).otherwise(0).map(queued -> DeviceSession.newBuilder()
                        .setDeviceId(device).setOnline(s.online()).setConnectedAtMs(s.connectedAtMs())
                        .setDisconnectedAtMs(s.disconnectedAtMs()).setLastSeenMs(s.lastSeenMs())
                        .setGatewayInstance(s.gateway()).setPresenceVersion(s.version())
                        .setQueuedCommands(queued).build()));
        return uni(session);
    }

    private static void permit(AgentTokens.Agent agent, String deviceId) {
        if (agent == null) {
            throw Status.UNAUTHENTICATED.withDescription("no agent").asRuntimeException();
        }
        if (!agent.mayAddress(deviceId)) {
            throw Status.PERMISSION_DENIED.withDescription("agent " + agent.name() + " may only address "
                    + agent.scopeDescription()).asRuntimeException();
        }
    }

    private static <T> Uni<T> uni(Future<T> future) {
        return Uni.createFrom().completionStage(future.toCompletionStage());
    }
}
