package io.devicegateway.session;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.net.URL;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.HashMap;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import jakarta.inject.Inject;

import org.awaitility.Awaitility;
import org.junit.jupiter.api.Test;

import com.google.protobuf.ByteString;
import com.google.protobuf.InvalidProtocolBufferException;

import io.devicegateway.testing.Agents;
import io.devicegateway.testing.DeviceAgent;
import io.devicegateway.testing.Devices;
import io.devicegateway.testing.KafkaRecords;
import io.devicegateway.testing.LocalServers;
import io.devicegateway.testing.SharedServers;
import io.devicegateway.v1.CommandOutcome;
import io.devicegateway.v1.CommandResult;
import io.devicegateway.v1.DeviceGatewayGrpc.DeviceGatewayBlockingStub;
import io.devicegateway.v1.GetSessionRequest;
import io.devicegateway.v1.Outcome;
import io.devicegateway.v1.SendEventRequest;
import io.devicegateway.v1.SendEventResponse;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.quarkus.test.common.QuarkusTestResourceLifecycleManager;
import io.quarkus.test.common.http.TestHTTPResource;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.test.junit.QuarkusTestProfile;
import io.quarkus.test.junit.TestProfile;
import io.vertx.redis.client.Command;
import io.vertx.redis.client.Redis;
import io.vertx.redis.client.Request;
import io.vertx.redis.client.Response;

/**
 * On a real Redis Cluster of three masters ({@code quarkus.redis.client-type=cluster}): sessions, presence, the
 * offline queue with in-order delivery, its per-device cap and TTL expiry, responses and the client id lease all
 * work. Redis Cluster refuses any script or pipeline whose keys span slots (CROSSSLOT), so every path run here proves
 * its keys agree.
 */
@QuarkusTest
@TestProfile(RedisClusterTest.ClusterRedis.class)
class RedisClusterTest {

    private static final Duration TIMEOUT = Duration.ofSeconds(30);

    /** Shared Kafka and Mosquitto; an own three-master Redis Cluster. */
    public static class ClusterRedis implements QuarkusTestProfile, QuarkusTestResourceLifecycleManager {
        static LocalServers.RedisCluster cluster;

        @Override
        public List<TestResourceEntry> testResources() {
            return List.of(new TestResourceEntry(ClusterRedis.class));
        }

        @Override
        public Map<String, String> start() {
            LocalServers shared = SharedServers.get();
            cluster = LocalServers.RedisCluster.start("redis-cluster");
            Map<String, String> config = new HashMap<>(shared.gatewayConfig());
            config.put("quarkus.redis.hosts", cluster.hosts());
            config.put("quarkus.redis.client-type", "cluster");
            // a leased client id (own prefix on the shared broker): the lease scripts run on the cluster too
            config.put("gateway.mqtt.client-id-prefix", "dgw-redis-cluster-test");
            config.put("gateway.grpc.auth.tokens", Agents.tokensConfig());
            config.put("gateway.commands.max-queued-per-device", "4");
            return config;
        }

        @Override
        public void stop() {
            cluster.close();
        }
    }

    @TestHTTPResource
    URL url;

    @Inject
    Redis redis;

    @Inject
    RedisKeys keys;

    private ManagedChannel channel;

    private DeviceGatewayBlockingStub stub() {
        return Agents.stub(channel, Agents.OPS_TOKEN);
    }

    private boolean online(String id) {
        return stub().getSession(GetSessionRequest.newBuilder().setDeviceId(id).build()).getOnline();
    }

    @Test
    void sessionsQueuesAndResponsesWorkAcrossSlotsOfThreeMasters() throws Exception {
        int port = SharedServers.get().mosquitto.port;
        channel = Agents.channel(url);
        List<DeviceAgent> devices = new ArrayList<>();
        try (KafkaRecords results = new KafkaRecords(SharedServers.get().kafka.bootstrapServers(),
                "iot.command-results")) {
            // devices whose keys land on all three masters
            Set<Integer> nodes = new HashSet<>();
            while (nodes.size() < 3 || devices.size() < 6) {
                String id = Devices.uniqueId("cl");
                nodes.add(RedisCalls.slot(keys.session(id)) * 3 / 16384); // create assigns equal slot ranges
                devices.add(new DeviceAgent(id, port).answering(null, "pong").connect());
            }
            for (DeviceAgent d : devices) {
                Awaitility.await().atMost(TIMEOUT).ignoreExceptionsInstanceOf(StatusRuntimeException.class)
                        .until(() -> online(d.deviceId));
                SendEventResponse answered = stub().sendEvent(SendEventRequest.newBuilder().setDeviceId(d.deviceId)
                        .setName("ping").setPayload(ByteString.copyFromUtf8("1")).setAwaitResponse(true).build());
                assertEquals(Outcome.RESPONDED, answered.getOutcome());
                assertEquals("pong", answered.getResponsePayload().toStringUtf8());
            }
            Awaitility.await().atMost(TIMEOUT).until(() -> onlineIndexed(devices), n -> n == devices.size());

            // offline: queue in order, one command expires, the rest is delivered in order on return
            DeviceAgent first = devices.get(0);
            first.goOffline();
            Awaitility.await().atMost(TIMEOUT).until(() -> !online(first.deviceId));
            SendEventResponse expiring = stub().sendEvent(command(first.deviceId, "soon").setTtlSeconds(1).build());
            assertEquals(Outcome.QUEUED, expiring.getOutcome());
            for (String name : List.of("a", "b", "c")) {
                assertEquals(Outcome.QUEUED, stub().sendEvent(command(first.deviceId, name).setTtlSeconds(60).build())
                        .getOutcome());
            }
            results.await(r -> is(r, expiring.getCorrelationId(), CommandOutcome.COMMAND_EXPIRED), 1, TIMEOUT);
            assertEquals(3, stub().getSession(GetSessionRequest.newBuilder().setDeviceId(first.deviceId).build())
                    .getQueuedCommands());
            DeviceAgent back = new DeviceAgent(first.deviceId, port).connect();
            devices.add(back);
            Awaitility.await().atMost(TIMEOUT).until(() -> back.received().size() == 3);
            assertEquals(List.of("a", "b", "c"), back.received().stream().map(DeviceAgent.Received::name).toList());
            Awaitility.await().atMost(TIMEOUT).until(() -> call(Request.cmd(Command.GET).arg(keys.queuedTotal())),
                    total -> total != null && total.toLong() == 0);

            // the per-device cap counts the device's own list (its slot): the fifth command is refused
            DeviceAgent capped = devices.get(1);
            assertEquals(RedisCalls.slot(keys.session(capped.deviceId)),
                    RedisCalls.slot(keys.responded(capped.deviceId, "c-1")));
            capped.goOffline();
            Awaitility.await().atMost(TIMEOUT).until(() -> !online(capped.deviceId));
            for (String name : List.of("w", "x", "y", "z")) {
                assertEquals(Outcome.QUEUED, stub().sendEvent(command(capped.deviceId, name).setTtlSeconds(60).build())
                        .getOutcome());
            }
            StatusRuntimeException full = assertThrows(StatusRuntimeException.class,
                    () -> stub().sendEvent(command(capped.deviceId, "over").setTtlSeconds(60).build()));
            assertEquals(Status.Code.RESOURCE_EXHAUSTED, full.getStatus().getCode());
            DeviceAgent cappedBack = new DeviceAgent(capped.deviceId, port).connect();
            devices.add(cappedBack);
            Awaitility.await().atMost(TIMEOUT).until(() -> cappedBack.received().size() == 4);
            assertEquals(List.of("w", "x", "y", "z"),
                    cappedBack.received().stream().map(DeviceAgent.Received::name).toList());
        } finally {
            devices.forEach(DeviceAgent::close);
            channel.shutdownNow();
        }
    }

    private long onlineIndexed(List<DeviceAgent> devices) throws Exception {
        long n = 0;
        for (DeviceAgent d : devices) {
            if (call(Request.cmd(Command.ZSCORE).arg(keys.online()).arg(d.deviceId)) != null) {
                n++;
            }
        }
        return n;
    }

    private Response call(Request request) throws Exception {
        return redis.send(request).toCompletionStage().toCompletableFuture().get(5, TimeUnit.SECONDS);
    }

    private static SendEventRequest.Builder command(String id, String name) {
        return SendEventRequest.newBuilder().setDeviceId(id).setName(name).setPayload(ByteString.copyFromUtf8(name));
    }

    private static boolean is(org.apache.kafka.clients.consumer.ConsumerRecord<String, byte[]> record,
            String correlationId, CommandOutcome outcome) {
        try {
            CommandResult r = CommandResult.parseFrom(record.value());
            return r.getCorrelationId().equals(correlationId) && r.getOutcome() == outcome;
        } catch (InvalidProtocolBufferException e) {
            return false;
        }
    }
}
