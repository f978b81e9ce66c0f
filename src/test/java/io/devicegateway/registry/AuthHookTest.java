package io.devicegateway.registry;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.net.URI;
import java.net.URL;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

import io.devicegateway.testing.Agents;
import io.devicegateway.testing.RedisCommands;
import io.devicegateway.testing.SharedServers;
import io.devicegateway.v1.DeviceRef;
import io.devicegateway.v1.DeviceRegistryGrpc.DeviceRegistryBlockingStub;
import io.devicegateway.v1.RegisterDeviceRequest;
import io.grpc.ManagedChannel;
import io.quarkus.test.common.http.TestHTTPResource;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.test.junit.QuarkusTestProfile;
import io.quarkus.test.junit.TestProfile;
import io.vertx.core.json.JsonObject;

/**
 * The HTTP auth hook (EMQX / mosquitto-go-auth) against the registry in a real Redis: the same credentials and topic
 * rights as the dynsec role, cached verifications that never outlive a rotation (on any instance), a disable or a
 * delete, and nothing without the shared secret.
 */
@QuarkusTest
@TestProfile(AuthHookTest.HookOn.class)
class AuthHookTest {

    static final String SECRET = "hook-shared-secret-for-tests"; // constant: the profile runs in another class loader

    /** Shared servers (plain broker, as with EMQX the broker asks the hook); the hook on. */
    public static class HookOn implements QuarkusTestProfile {
        @Override
        public Map<String, String> getConfigOverrides() {
            Map<String, String> config = new HashMap<>();
            config.put("gateway.registry.auth-hook.secret", SECRET);
            config.put("gateway.mqtt.client-id", "dgw-test-auth-hook");
            return config;
        }

        @Override
        public List<TestResourceEntry> testResources() {
            return List.of(new TestResourceEntry(SharedServers.class));
        }
    }

    @TestHTTPResource
    URL url;

    static ManagedChannel channel;
    final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();

    @AfterAll
    static void close() {
        if (channel != null) {
            channel.shutdownNow();
        }
    }

    DeviceRegistryBlockingStub ops() {
        if (channel == null) {
            channel = Agents.channel(url);
        }
        return Agents.registry(channel, Agents.OPS_TOKEN);
    }

    record Answer(int status, JsonObject body) {
        String result() {
            return body.getString("result");
        }
    }

    Answer post(String path, String authorization, String body) throws Exception {
        HttpRequest.Builder request = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + url.getPort() + path))
                .timeout(Duration.ofSeconds(10)).header("content-type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body));
        if (authorization != null) {
            request.header("authorization", authorization);
        }
        HttpResponse<String> response = http.send(request.build(), HttpResponse.BodyHandlers.ofString());
        return new Answer(response.statusCode(), new JsonObject(response.body()));
    }

    String auth(String username, String password) throws Exception {
        Answer a = post("/mqtt/auth", "Bearer " + SECRET, new JsonObject().put("clientid", "c-" + username)
                .put("username", username).put("password", password).encode());
        assertEquals(200, a.status(), a.body().encode());
        assertEquals(a.result().equals("allow"), a.body().getBoolean("ok"), "ok mirrors result (mosquitto-go-auth)");
        return a.result();
    }

    String acl(String username, String topic, String action) throws Exception {
        Answer a = post("/mqtt/acl", "Bearer " + SECRET, new JsonObject().put("clientid", "c-" + username)
                .put("username", username).put("topic", topic).put("action", action).encode());
        assertEquals(200, a.status(), a.body().encode());
        return a.result();
    }

    String register(String id) {
        return ops().registerDevice(RegisterDeviceRequest.newBuilder().setDeviceId(id).build()).getPassword();
    }

    static String uniqueId(String prefix) {
        return prefix + "-" + UUID.randomUUID().toString().substring(0, 8);
    }

    @Test
    void theHookAllowsADevicesCurrentPasswordAndDeniesWrongUnknownDisabledAndDeletedOnes() throws Exception {
        String id = uniqueId("truck");
        String password = register(id);
        assertEquals("allow", auth(id, password));
        assertEquals("allow", auth(id, password), "again, from the cache");
        assertEquals("deny", auth(id, password + "x"));
        assertEquals("allow", auth(id, password), "a wrong attempt does not evict the verified password");
        assertEquals("deny", auth(uniqueId("ghost"), password));
        assertEquals("deny", auth("bad id", password));
        assertEquals("deny", auth(id, ""));

        ops().disableDevice(DeviceRef.newBuilder().setDeviceId(id).build());
        assertEquals("deny", auth(id, password), "a cached verification never outlives a disable");
        ops().enableDevice(DeviceRef.newBuilder().setDeviceId(id).build());
        assertEquals("allow", auth(id, password));

        String rotated = ops().rotateCredentials(DeviceRef.newBuilder().setDeviceId(id).build()).getPassword();
        assertEquals("deny", auth(id, password), "the old password fails at once after a rotation");
        assertEquals("allow", auth(id, rotated));

        ops().deleteDevice(DeviceRef.newBuilder().setDeviceId(id).build());
        assertEquals("deny", auth(id, rotated));
    }

    @Test
    void aRotationOnAnotherInstanceInvalidatesCachedCredentialsHereToo() throws Exception {
        String id = uniqueId("truck");
        String password = register(id);
        assertEquals("allow", auth(id, password)); // cached here
        // another gateway instance rotates: only Redis changes, this instance's cache is not told
        String other = DevicePasswords.generate();
        try (RedisCommands redis = new RedisCommands(SharedServers.get().redis.port)) {
            redis.call("HSET", "dgw:{" + id + "}:device", "secret", DevicePasswords.hash(other, 10_000));
        }
        assertEquals("deny", auth(id, password));
        assertEquals("allow", auth(id, other));
    }

    @Test
    void theHookGrantsExactlyTheTopicRightsOfTheDynsecRole() throws Exception {
        String id = uniqueId("truck");
        String other = uniqueId("truck");
        register(id);
        register(other);
        String own = "devices/" + id + "/";
        for (String topic : List.of(own + "telemetry", own + "telemetry/temp", own + "telemetry/a/b", own + "events",
                own + "events/alarm", own + "status", own + "responses/corr-1", own + "responses/corr-1/200")) {
            assertEquals("allow", acl(id, topic, "publish"), topic);
        }
        for (String topic : List.of(own + "telemetryx", own + "status/x", own + "commands/reboot/1", own + "other",
                "devices/" + other + "/telemetry", "devices/" + other + "/status", own + "telemetry/+",
                own + "telemetry/#", "devices/+/telemetry", "#", "dgw/gateway-gone/x", "devices/" + id)) {
            assertEquals("deny", acl(id, topic, "publish"), topic);
        }
        for (String filter : List.of(own + "commands/#", own + "commands", own + "commands/reboot/+")) {
            assertEquals("allow", acl(id, filter, "subscribe"), filter);
        }
        for (String filter : List.of("devices/" + other + "/commands/#", "devices/+/commands/#", "#",
                own + "telemetry", own + "#", own + "+/reboot", "$share/g/" + own + "commands/#",
                own + "commandsx/#")) {
            assertEquals("deny", acl(id, filter, "subscribe"), filter);
        }
        // mosquitto-go-auth's numeric access: 1 read (receive), 2 write (publish), 4 subscribe
        assertEquals("allow", aclAcc(id, own + "telemetry", 2));
        assertEquals("deny", aclAcc(id, "devices/" + other + "/telemetry", 2));
        assertEquals("allow", aclAcc(id, own + "commands/#", 4));
        assertEquals("allow", aclAcc(id, own + "commands/reboot/1", 1));
        assertEquals("deny", aclAcc(id, "devices/" + other + "/commands/reboot/1", 1));
        // unknown and disabled devices get nothing, even on "their" topics
        String ghost = uniqueId("ghost");
        assertEquals("deny", acl(ghost, "devices/" + ghost + "/telemetry", "publish"));
        ops().disableDevice(DeviceRef.newBuilder().setDeviceId(other).build());
        assertEquals("deny", acl(other, "devices/" + other + "/telemetry", "publish"));
        assertEquals("deny", acl(other, "devices/" + other + "/commands/#", "subscribe"));
    }

    String aclAcc(String username, String topic, int acc) throws Exception {
        Answer a = post("/mqtt/acl", "Bearer " + SECRET, new JsonObject().put("clientid", "c").put("username", username)
                .put("topic", topic).put("acc", acc).encode());
        assertEquals(200, a.status());
        return a.result();
    }

    @Test
    void theHookRejectsCallsWithoutTheSharedSecretAndUnreadableBodies() throws Exception {
        String id = uniqueId("truck");
        String password = register(id);
        String body = new JsonObject().put("clientid", "c").put("username", id).put("password", password).encode();
        for (String path : List.of("/mqtt/auth", "/mqtt/acl")) {
            assertEquals(401, post(path, null, body).status(), path + " without a secret");
            assertEquals(401, post(path, "Bearer wrong", body).status(), path + " with a wrong secret");
            assertEquals(401, post(path, SECRET, body).status(), path + " without the Bearer scheme");
            assertEquals(400, post(path, "Bearer " + SECRET, "not json").status(), path);
            assertEquals(400, post(path, "Bearer " + SECRET, "{}").status(), path + " without fields");
        }
        Answer unknownAction = post("/mqtt/acl", "Bearer " + SECRET, new JsonObject().put("username", id)
                .put("topic", "devices/" + id + "/telemetry").put("action", "delete").encode());
        assertEquals(400, unknownAction.status());
        assertEquals("deny", unknownAction.result());
        assertEquals("allow", auth(id, password), "and with the secret it answers");
    }
}
