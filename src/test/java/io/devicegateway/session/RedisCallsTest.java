package io.devicegateway.session;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/** The Redis Cluster slot used to split pipelines agrees with Redis (values from the CLUSTER KEYSLOT docs). */
class RedisCallsTest {

    @Test
    void slotsMatchRedisClusterKeyslot() {
        assertEquals(11058, RedisCalls.slot("somekey"));
        assertEquals(2515, RedisCalls.slot("foo{hash_tag}"));
        assertEquals(2515, RedisCalls.slot("{hash_tag}"));
        assertEquals(12182, RedisCalls.slot("foo"));
    }

    @Test
    void aDevicesKeysShareOneSlotWhateverTheirName() {
        assertEquals(RedisCalls.slot("dgw:{truck-1}:session"), RedisCalls.slot("dgw:{truck-1}:queue"));
        assertEquals(RedisCalls.slot("truck-1"), RedisCalls.slot("other-prefix:{truck-1}:queue"));
    }

    @Test
    void anEmptyTagHashesTheWholeKey() {
        assertEquals(RedisCalls.slot("a{}b"), RedisCalls.slot("a{}b"));
        assertEquals(false, RedisCalls.slot("a{}b") == RedisCalls.slot(""));
    }
}
