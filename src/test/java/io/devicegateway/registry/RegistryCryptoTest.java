package io.devicegateway.registry;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Base64;

import org.junit.jupiter.api.Test;

/** Passwords, their hashes and the sealed pending passwords, without servers. */
class RegistryCryptoTest {

    static final String KEY = Base64.getEncoder().encodeToString(new byte[32]);
    static final String OTHER_KEY = Base64.getEncoder().encodeToString("0123456789abcdef0123456789abcdef".getBytes());

    @Test
    void generatedPasswordsAre43RandomBase64UrlCharacters() {
        String a = DevicePasswords.generate();
        assertEquals(43, a.length());
        assertTrue(a.matches("[A-Za-z0-9_-]{43}"));
        assertNotEquals(a, DevicePasswords.generate());
    }

    @Test
    void aHashVerifiesItsPasswordOnlyAndIsSaltedPerHash() {
        String password = DevicePasswords.generate();
        String hash = DevicePasswords.hash(password, 10_000);
        assertTrue(hash.startsWith("pbkdf2-sha512$10000$"));
        assertTrue(DevicePasswords.verify(password, hash));
        assertFalse(DevicePasswords.verify(password + "x", hash));
        assertNotEquals(hash, DevicePasswords.hash(password, 10_000), "a new salt each time");
        assertFalse(DevicePasswords.verify(password, "pbkdf2-sha512$10000$not-base64$x"));
        assertFalse(DevicePasswords.verify(password, "md5$abc"));
        assertFalse(DevicePasswords.verify(password, null));
    }

    @Test
    void aSealedPasswordOpensOnlyWithItsKeyAndForItsDevice() {
        PendingSecrets secrets = PendingSecrets.fromBase64(KEY);
        String sealed = secrets.seal("truck-1", "the-password");
        assertFalse(sealed.contains("the-password"));
        assertEquals("the-password", secrets.open("truck-1", sealed));
        assertNull(secrets.open("truck-2", sealed), "moved to another device's record: refused");
        assertNull(PendingSecrets.fromBase64(OTHER_KEY).open("truck-1", sealed), "another key: refused");
        assertNull(secrets.open("truck-1", sealed.substring(0, sealed.length() - 2) + "AA"), "tampered: refused");
        assertNull(secrets.open("truck-1", "garbage"));
    }

    @Test
    void aPendingKeyThatIsNot32BytesOfBase64IsAStartupErrorThatNeverShowsTheKey() {
        IllegalArgumentException shortKey = assertThrows(IllegalArgumentException.class,
                () -> PendingSecrets.fromBase64(Base64.getEncoder().encodeToString(new byte[16])));
        assertTrue(shortKey.getMessage().contains("must be 32 bytes"));
        IllegalArgumentException notBase64 = assertThrows(IllegalArgumentException.class,
                () -> PendingSecrets.fromBase64("not base64 !"));
        assertFalse(notBase64.getMessage().contains("not base64 !"));
    }
}
