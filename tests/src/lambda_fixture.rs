//! Lambda functions on moto's control plane: the IAM role `CreateFunction` wants, and the
//! ZIP archive it takes, without an IAM SDK crate or a ZIP crate. Used by the deployer's
//! integration tests and the e2e test.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::moto::MotoServer;

/// Creates an IAM role in moto, whose Lambda `CreateFunction` wants one that exists, and
/// returns its ARN. One query-API request by hand rather than another SDK crate; moto reads
/// the service from the credential scope and does not check the signature.
pub async fn create_role(moto: &MotoServer, name: &str) -> String {
    let policy = concat!(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","#,
        r#""Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#
    );
    let body = format!(
        "Action=CreateRole&Version=2010-05-08&RoleName={}&AssumeRolePolicyDocument={}",
        form_encode(name),
        form_encode(policy)
    );
    let host = moto.endpoint.trim_start_matches("http://");
    let request = format!(
        "POST / HTTP/1.0\r\nHost: {host}\r\n\
         Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n\
         Authorization: AWS4-HMAC-SHA256 \
         Credential=testing/20260101/us-east-1/iam/aws4_request, \
         SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(host).await.expect("connect to moto");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write to moto");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read moto's answer");
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "CreateRole answered: {response}"
    );
    let arn = response
        .split_once("<Arn>")
        .and_then(|(_, rest)| rest.split_once("</Arn>"))
        .map(|(arn, _)| arn.to_owned());
    arn.unwrap_or_else(|| panic!("no role ARN in: {response}"))
}

/// `application/x-www-form-urlencoded` for one value.
pub fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A ZIP archive holding one executable file, stored without compression: what Lambda's
/// `ZipFile` takes, without a ZIP crate.
pub fn stored_zip(name: &str, contents: &[u8]) -> Vec<u8> {
    const DOS_DATE_1980_01_01: u16 = (1 << 5) | 1;
    let name_len = u16::try_from(name.len()).expect("a short file name");
    let size = u32::try_from(contents.len()).expect("a small file");
    let crc = crc32(contents);
    let mut zip = Vec::new();
    // Local file header.
    zip.extend_from_slice(&0x0403_4b50_u32.to_le_bytes());
    for field in [10_u16, 0, 0, 0, DOS_DATE_1980_01_01] {
        zip.extend_from_slice(&field.to_le_bytes()); // version, flags, stored, time, date
    }
    for field in [crc, size, size] {
        zip.extend_from_slice(&field.to_le_bytes());
    }
    zip.extend_from_slice(&name_len.to_le_bytes());
    zip.extend_from_slice(&0_u16.to_le_bytes());
    zip.extend_from_slice(name.as_bytes());
    zip.extend_from_slice(contents);
    // Central directory: made on Unix (3), so the external attributes carry mode 0755.
    let directory_offset = u32::try_from(zip.len()).expect("a small archive");
    zip.extend_from_slice(&0x0201_4b50_u32.to_le_bytes());
    for field in [0x031e_u16, 10, 0, 0, 0, DOS_DATE_1980_01_01] {
        zip.extend_from_slice(&field.to_le_bytes());
    }
    for field in [crc, size, size] {
        zip.extend_from_slice(&field.to_le_bytes());
    }
    for field in [name_len, 0, 0, 0, 0] {
        zip.extend_from_slice(&field.to_le_bytes()); // name, extra, comment, disk, internal
    }
    zip.extend_from_slice(&(0o100_755_u32 << 16).to_le_bytes());
    zip.extend_from_slice(&0_u32.to_le_bytes()); // the local header's offset
    zip.extend_from_slice(name.as_bytes());
    let directory_size = u32::try_from(zip.len()).expect("a small archive") - directory_offset;
    // End of central directory.
    zip.extend_from_slice(&0x0605_4b50_u32.to_le_bytes());
    for field in [0_u16, 0, 1, 1] {
        zip.extend_from_slice(&field.to_le_bytes());
    }
    zip.extend_from_slice(&directory_size.to_le_bytes());
    zip.extend_from_slice(&directory_offset.to_le_bytes());
    zip.extend_from_slice(&0_u16.to_le_bytes());
    zip
}

/// CRC-32 (IEEE 802.3, reflected), as ZIP uses it.
pub fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(u32::MAX, |crc, &byte| {
        (0..8).fold(crc ^ u32::from(byte), |c, _| {
            if c & 1 == 1 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zip_helper_writes_a_readable_archive() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        let zip = stored_zip("bootstrap", b"hello");
        assert_eq!(&zip[..4], b"PK\x03\x04");
        assert_eq!(&zip[zip.len() - 22..zip.len() - 18], b"PK\x05\x06");
        assert_eq!(zip.len(), 30 + 9 + 5 + 46 + 9 + 22);
    }
}
