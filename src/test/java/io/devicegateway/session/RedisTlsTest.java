package io.devicegateway.session;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.net.URL;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.function.Supplier;

import org.awaitility.Awaitility;
import org.junit.jupiter.api.Test;

import com.google.protobuf.ByteString;

import io.devicegateway.testing.Agents;
import io.devicegateway.testing.DeviceAgent;
import io.devicegateway.testing.Devices;
import io.devicegateway.testing.LocalServers;
import io.devicegateway.testing.SharedServers;
import io.devicegateway.testing.TestCertificates;
import io.devicegateway.v1.DeviceGatewayGrpc.DeviceGatewayBlockingStub;
import io.devicegateway.v1.GetSessionRequest;
import io.devicegateway.v1.Outcome;
import io.devicegateway.v1.SendEventRequest;
import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import io.quarkus.test.common.QuarkusTestResourceLifecycleManager;
import io.quarkus.test.common.http.TestHTTPResource;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.test.junit.QuarkusTestProfile;
import io.quarkus.test.junit.TestProfile;

/**
 * Redis over mutual TLS with an ACL user and password (plaintext port off, the default user disabled), configured
 * the documented way: a {@code rediss://user:password@host} URI and the Quarkus TLS registry
 * ({@code quarkus.redis.tls-configuration-name}). Sessions, the offline queue and the client id lease all work.
 */
@QuarkusTest
@TestProfile(RedisTlsTest.TlsRedis.class)
class RedisTlsTest {

    private static final Duration TIMEOUT = Duration.ofSeconds(30);

    /** Shared Kafka and Mosquitto; an own Redis that only speaks TLS and only knows user "gateway". */
    public static class TlsRedis implements QuarkusTestProfile, QuarkusTestResourceLifecycleManager {
        static LocalServers.Redis redis;

        @Override
        public List<TestResourceEntry> testResources() {
            return List.of(new TestResourceEntry(TlsRedis.class));
        }

        @Override
        public Map<String, String> start() {
            LocalServers shared = SharedServers.get();
            Path dir = Paths.get("target", "servers", "redis-tls-" + UUID.randomUUID()).toAbsolutePath();
            TestCertificates certs = new TestCertificates(dir.resolve("certs")).ca("ca")
                    .signed("ca", "server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                            + "extendedKeyUsage=serverAuth\n")
                    .signed("ca", "client", "device-gateway", "extendedKeyUsage=clientAuth\n");
            redis = new LocalServers.Redis(dir.resolve("redis"));
            redis.tlsOnly = true;
            redis.extraArgs.addAll(List.of("--tls-cert-file", certs.file("server.crt").toString(),
                    "--tls-key-file", certs.file("server.key").toString(),
                    "--tls-ca-cert-file", certs.file("ca.crt").toString(),
                    "--tls-auth-clients", "yes",
                    "--user", "default", "off",
                    "--user", "gateway", "on", ">s3cret-pass", "~dgw:*", "+@all"));
            redis.start();
            Map<String, String> config = new HashMap<>(shared.gatewayConfig());
            config.put("quarkus.redis.hosts", "rediss://gateway:s3cret-pass@localhost:" + redis.port);
            config.put("quarkus.redis.tls-configuration-name", "redis");
            config.put("quarkus.tls.redis.trust-store.pem.certs", certs.file("ca.crt").toString());
            config.put("quarkus.tls.redis.key-store.pem.client.cert", certs.file("client.crt").toString());
            config.put("quarkus.tls.redis.key-store.pem.client.key", certs.file("client.key").toString());
            config.put("quarkus.tls.redis.hostname-verification-algorithm", "HTTPS");
            // a leased client id (own prefix on the shared broker): the lease scripts run over TLS too
            config.put("gateway.mqtt.client-id-prefix", "dgw-redis-tls-test");
            config.put("gateway.grpc.auth.tokens", Agents.tokensConfig());
            return config;
        }

        @Override
        public void stop() {
            redis.stop();
        }
    }

    @TestHTTPResource
    URL url;

    @Test
    void sessionsAndQueuesWorkOverMutualTlsWithAnAclUser() {
        String id = Devices.uniqueId("tls");
        GetSessionRequest get = GetSessionRequest.newBuilder().setDeviceId(id).build();
        ManagedChannel channel = Agents.channel(url);
        Supplier<DeviceGatewayBlockingStub> stub = () -> Agents.stub(channel, Agents.OPS_TOKEN);
        DeviceAgent device = new DeviceAgent(id, SharedServers.get().mosquitto.port).connect();
        try {
            Awaitility.await().atMost(TIMEOUT).ignoreExceptionsInstanceOf(StatusRuntimeException.class)
                    .until(() -> stub.get().getSession(get).getOnline());
            device.goOffline();
            Awaitility.await().atMost(TIMEOUT).until(() -> !stub.get().getSession(get).getOnline());
            SendEventRequest command = SendEventRequest.newBuilder().setDeviceId(id).setName("later")
                    .setPayload(ByteString.copyFromUtf8("1")).setTtlSeconds(60).build();
            assertEquals(Outcome.QUEUED, stub.get().sendEvent(command).getOutcome());
            assertEquals(1, stub.get().getSession(get).getQueuedCommands());

            DeviceAgent back = new DeviceAgent(id, SharedServers.get().mosquitto.port).connect();
            try {
                Awaitility.await().atMost(TIMEOUT).until(() -> back.received().size() == 1);
                assertEquals("later", back.received().get(0).name());
            } finally {
                back.close();
            }
        } finally {
            device.close();
            channel.shutdownNow();
        }
    }
}
