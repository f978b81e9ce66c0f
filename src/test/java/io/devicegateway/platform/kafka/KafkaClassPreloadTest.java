package io.devicegateway.platform.kafka;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;

import org.junit.jupiter.api.Test;

/** The preload skips a missing class silently (its user reports it), so a renamed class must fail here instead. */
class KafkaClassPreloadTest {

    @Test
    void everyPreloadRootExistsInTheKafkaClientWeShip() {
        ClassLoader loader = getClass().getClassLoader();
        for (String root : KafkaClassPreload.ROOTS) {
            assertDoesNotThrow(() -> Class.forName(root, false, loader), root);
        }
    }
}
