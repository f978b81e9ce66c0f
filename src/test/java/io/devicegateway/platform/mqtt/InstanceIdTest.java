package io.devicegateway.platform.mqtt;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/**
 * Instance ids (lease owners, envelope {@code gateway_instance}) stay unique for long pod names: two instances
 * sharing an id would both believe they hold the same MQTT client id lease.
 */
class InstanceIdTest {

    /** A Deployment's pod name: up to 253 characters, the unique part (ReplicaSet hash, pod suffix) at the end. */
    private static String podName(String suffix) {
        return "device-gateway-" + "europe-west-production-fleet-telemetry-".repeat(5) + "7d9f8c6b5-" + suffix;
    }

    @Test
    void longPodNamesThatDifferOnlyAtTheEndGetDistinctInstanceIds() {
        String a = MqttConnection.instanceId(podName("abcde"), 8080);
        String b = MqttConnection.instanceId(podName("fghij"), 8080);
        assertNotEquals(a, b);
        assertTrue(a.length() <= 60 && b.length() <= 60, a + " / " + b);
        assertEquals(a.substring(0, 47), b.substring(0, 47), "the shortened names alone would collide");
    }

    @Test
    void theSamePodNameOnAnotherPortIsAnotherInstance() {
        assertNotEquals(MqttConnection.instanceId(podName("abcde"), 8080),
                MqttConnection.instanceId(podName("abcde"), 8081));
    }

    @Test
    void theSamePodGetsTheSameIdAfterARestart() {
        assertEquals(MqttConnection.instanceId(podName("abcde"), 8080),
                MqttConnection.instanceId(podName("abcde"), 8080), "a container restarted in place takes its lease back");
    }

    @Test
    void shortPodNamesAreKeptReadable() {
        assertEquals("device-gateway-7d9f8c6b5-abcde-8080", MqttConnection.instanceId("device-gateway-7d9f8c6b5-abcde", 8080));
    }

    @Test
    void instanceIdsUseOnlyCharactersSafeInClientIdsAndTopics() {
        String id = MqttConnection.instanceId("gw/+#{x}:" + "y".repeat(80), 8080);
        assertTrue(id.matches("[A-Za-z0-9._-]{1,60}"), id);
    }
}
