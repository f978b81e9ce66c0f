package io.devicegateway.registry;

import java.time.Duration;
import java.util.Optional;

import io.smallrye.config.ConfigMapping;
import io.smallrye.config.WithDefault;

/** The device registry ({@code gateway.registry.*}); every key is documented in README (Configuration). */
@ConfigMapping(prefix = "gateway.registry")
public interface RegistryConfig {

    /** Compacted Kafka topic with every registry change (key device id, value {@code Device}, tombstone on delete). */
    @WithDefault("iot.registry")
    String topic();

    /** PBKDF2-HMAC-SHA512 iterations for new password hashes (stored with each hash, so it can change later). */
    @WithDefault("210000")
    int passwordHashIterations();

    /** How long a registry RPC waits for the broker (dynsec) and Kafka to confirm a change before answering anyway. */
    @WithDefault("5s")
    Duration syncTimeout();

    /** Largest ListDevices page. */
    @WithDefault("1000")
    int maxPageSize();

    MosquittoDynsec mosquittoDynsec();

    AuthHook authHook();

    /** Keeping Mosquitto's client list in sync over {@code $CONTROL/dynamic-security/v1}. */
    interface MosquittoDynsec {
        @WithDefault("false")
        boolean enabled();

        /**
         * AES-256 key (base64 of 32 bytes, from a Secret) that encrypts a new password in Redis until the broker has
         * confirmed it, so a password issued while the broker is unreachable can be applied when it returns.
         * Required when dynsec is enabled.
         */
        Optional<String> pendingKey();

        /** The broker's reply to one batch of commands. */
        @WithDefault("10s")
        Duration requestTimeout();

        /** Full reconciliation (registry → broker) runs on every (re)connect and this often. */
        @WithDefault("5m")
        Duration reconcileInterval();

        /** Per-device broker roles are named {@code <role-prefix><device id>}. */
        @WithDefault("dgw-device:")
        String rolePrefix();
    }

    /** {@code POST /mqtt/auth} and {@code /mqtt/acl} for brokers that call out (EMQX, mosquitto-go-auth). */
    interface AuthHook {
        /** Shared secret the broker sends as {@code Authorization: Bearer <secret>}; unset = the hook is off. */
        Optional<String> secret();

        /** Verified credentials kept in memory (keyed HMAC of the password, never the password). */
        @WithDefault("100000")
        int cacheSize();

        /** Threads running slow password verifications (cache misses). */
        @WithDefault("2")
        int maxConcurrentVerifications();

        /**
         * Cache misses waiting for a verification thread; beyond it, or after waiting 4 s, the hook answers 503 (busy).
         */
        @WithDefault("256")
        int maxQueuedVerifications();
    }
}
