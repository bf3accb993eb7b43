//! A small PDF writer for generating test documents: numbered objects, a classic cross-reference
//! table, text pages in a base-14 font, image XObjects, and the standard security handler
//! (revision 3: RC4 with a 128-bit key, MD5 key derivation, ISO 32000-1 §7.6.3) so that
//! password-protected files can be made without third-party files or tools.

use md5::{Digest, Md5};
use std::fmt::Write as _;

/// One page of a generated document.
#[derive(Clone, Debug)]
pub struct PageSpec {
    /// MediaBox width and height in points (1/72 inch).
    pub width_pt: f64,
    pub height_pt: f64,
    /// Lines of text drawn top-down in Helvetica.
    pub lines: Vec<String>,
    /// An image drawn over the whole page.
    pub image: Option<ImageSpec>,
}

impl PageSpec {
    /// An A4 page with the given text.
    pub fn a4(lines: Vec<String>) -> Self {
        PageSpec {
            width_pt: 595.0,
            height_pt: 842.0,
            lines,
            image: None,
        }
    }
}

/// An image XObject: the dictionary entries besides /Type, /Subtype and /Length, and the stream
/// bytes as they go into the file (already encoded by whatever /Filter says).
#[derive(Clone, Debug)]
pub struct ImageSpec {
    pub dict: String,
    pub data: Vec<u8>,
}

/// The standard security handler's parameters.
#[derive(Clone, Debug)]
pub struct Encryption {
    /// Empty: anyone may open the file (only the owner password restricts permissions).
    pub user_password: Vec<u8>,
    pub owner_password: Vec<u8>,
    /// Permission bits (/P), as the signed 32-bit value the file stores.
    pub permissions: i32,
}

/// Objects numbered from 1, each stored as its body (what goes between `obj` and `endobj`), with
/// an optional stream.
#[derive(Default)]
pub struct PdfWriter {
    objects: Vec<(String, Option<Vec<u8>>)>,
}

impl PdfWriter {
    /// Adds a non-stream object; returns its number.
    pub fn add(&mut self, body: impl Into<String>) -> u32 {
        self.objects.push((body.into(), None));
        self.objects.len() as u32
    }

    /// Adds a stream object; `dict` holds the entries besides /Length.
    pub fn add_stream(&mut self, dict: &str, data: Vec<u8>) -> u32 {
        self.objects.push((dict.to_string(), Some(data)));
        self.objects.len() as u32
    }

    /// Reserves a number for an object written later with [`PdfWriter::set`].
    pub fn reserve(&mut self) -> u32 {
        self.add("null")
    }

    pub fn set(&mut self, num: u32, body: impl Into<String>) {
        self.objects[num as usize - 1] = (body.into(), None);
    }

    /// The file's bytes: header, objects, cross-reference table and trailer. With `encryption`,
    /// every stream is RC4-encrypted with its object key (the writer puts no strings outside
    /// streams, so streams are all there is to encrypt).
    pub fn finish(mut self, root: u32, encryption: Option<&Encryption>) -> Vec<u8> {
        let file_id = Md5::digest(format!("pagesight-{}", self.objects.len()).as_bytes());
        let mut trailer_extra = format!(
            " /ID [<{}> <{}>]",
            hex(file_id.as_slice()),
            hex(file_id.as_slice())
        );
        let mut key = None;
        if let Some(enc) = encryption {
            let handler = StandardSecurity::new(enc, file_id.as_slice());
            let dict = format!(
                "<< /Filter /Standard /V 2 /R 3 /Length 128 /O <{}> /U <{}> /P {} >>",
                hex(&handler.o),
                hex(&handler.u),
                enc.permissions
            );
            let n = self.add(dict);
            write!(trailer_extra, " /Encrypt {n} 0 R").expect("writing to a String");
            key = Some((handler.key, n));
        }
        let mut out = b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n".to_vec();
        let mut offsets = Vec::with_capacity(self.objects.len());
        for (i, (body, stream)) in self.objects.iter().enumerate() {
            let num = i as u32 + 1;
            offsets.push(out.len());
            out.extend_from_slice(format!("{num} 0 obj\n").as_bytes());
            match stream {
                None => out.extend_from_slice(body.as_bytes()),
                Some(data) => {
                    let data = match &key {
                        Some((k, enc_obj)) if *enc_obj != num => rc4(&object_key(k, num, 0), data),
                        _ => data.clone(),
                    };
                    out.extend_from_slice(
                        format!("<< {body} /Length {} >>\nstream\n", data.len()).as_bytes(),
                    );
                    out.extend_from_slice(&data);
                    out.extend_from_slice(b"\nendstream");
                }
            }
            out.extend_from_slice(b"\nendobj\n");
        }
        let xref = out.len();
        let mut table = format!("xref\n0 {}\n0000000000 65535 f \n", self.objects.len() + 1);
        for o in &offsets {
            writeln!(table, "{o:010} 00000 n ").expect("writing to a String");
        }
        write!(
            table,
            "trailer\n<< /Size {} /Root {root} 0 R{trailer_extra} >>\nstartxref\n{xref}\n%%EOF\n",
            self.objects.len() + 1
        )
        .expect("writing to a String");
        out.extend_from_slice(table.as_bytes());
        out
    }
}

/// A complete document with the given pages.
pub fn document(pages: &[PageSpec], encryption: Option<&Encryption>) -> Vec<u8> {
    let mut w = PdfWriter::default();
    let catalog = w.reserve();
    let tree = w.reserve();
    let font = w.add("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>");
    let mut kids = Vec::new();
    for p in pages {
        let mut content = String::new();
        let mut xobjects = String::new();
        if let Some(img) = &p.image {
            let n = w.add_stream(
                &format!("/Type /XObject /Subtype /Image {}", img.dict),
                img.data.clone(),
            );
            xobjects = format!(" /XObject << /Im0 {n} 0 R >>");
            writeln!(
                content,
                "q {} 0 0 {} 0 0 cm /Im0 Do Q",
                p.width_pt, p.height_pt
            )
            .expect("writing to a String");
        }
        let size = (p.height_pt / 40.0).clamp(6.0, 48.0);
        content.push_str("BT\n");
        writeln!(
            content,
            "/F1 {size:.1} Tf {:.1} TL 36 {:.1} Td",
            size * 1.3,
            p.height_pt - 36.0 - size
        )
        .expect("writing to a String");
        for line in &p.lines {
            writeln!(content, "({}) '", escape_string(line)).expect("writing to a String");
        }
        content.push_str("ET\n");
        let c = w.add_stream("", content.into_bytes());
        kids.push(w.add(format!(
            "<< /Type /Page /Parent {tree} 0 R /MediaBox [0 0 {} {}] /Contents {c} 0 R \
             /Resources << /Font << /F1 {font} 0 R >>{xobjects} >> >>",
            p.width_pt, p.height_pt
        )));
    }
    let refs: Vec<String> = kids.iter().map(|k| format!("{k} 0 R")).collect();
    w.set(
        tree,
        format!(
            "<< /Type /Pages /Kids [{}] /Count {} >>",
            refs.join(" "),
            kids.len()
        ),
    );
    w.set(catalog, format!("<< /Type /Catalog /Pages {tree} 0 R >>"));
    w.finish(catalog, encryption)
}

/// A PDF literal string's body: backslash, parentheses escaped; non-ASCII replaced.
pub fn escape_string(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\\' | '(' | ')' => format!("\\{c}"),
            c if c.is_ascii() && !c.is_ascii_control() => c.to_string(),
            _ => "?".to_string(),
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// The 32-byte padding of ISO 32000-1 §7.6.3.3, algorithm 2 step a.
const PAD: [u8; 32] = [
    0x28, 0xBF, 0x4E, 0x5E, 0x4E, 0x75, 0x8A, 0x41, 0x64, 0x00, 0x4E, 0x56, 0xFF, 0xFA, 0x01, 0x08,
    0x2E, 0x2E, 0x00, 0xB6, 0xD0, 0x68, 0x3E, 0x80, 0x2F, 0x0C, 0xA9, 0xFE, 0x64, 0x53, 0x69, 0x7A,
];

/// A password padded or cut to 32 bytes.
fn padded(pw: &[u8]) -> [u8; 32] {
    let mut out = PAD;
    let n = pw.len().min(32);
    out[..n].copy_from_slice(&pw[..n]);
    out[n..].copy_from_slice(&PAD[..32 - n]);
    out
}

/// Revision-3 values: the /O and /U entries and the file key (16 bytes).
struct StandardSecurity {
    o: [u8; 32],
    u: [u8; 32],
    key: [u8; 16],
}

impl StandardSecurity {
    fn new(enc: &Encryption, file_id: &[u8]) -> Self {
        // Algorithm 3: the owner key from the owner password (the user password if none).
        let owner = if enc.owner_password.is_empty() {
            &enc.user_password
        } else {
            &enc.owner_password
        };
        let mut h: [u8; 16] = Md5::digest(padded(owner)).into();
        for _ in 0..50 {
            h = Md5::digest(h).into();
        }
        let mut o = rc4(&h, &padded(&enc.user_password));
        for i in 1..=19u8 {
            let k: Vec<u8> = h.iter().map(|b| b ^ i).collect();
            o = rc4(&k, &o);
        }
        let o: [u8; 32] = o.try_into().expect("RC4 keeps the length");
        // Algorithm 2: the file key.
        let mut m = Md5::new();
        m.update(padded(&enc.user_password));
        m.update(o);
        m.update(enc.permissions.to_le_bytes());
        m.update(file_id);
        let mut key: [u8; 16] = m.finalize().into();
        for _ in 0..50 {
            key = Md5::digest(key).into();
        }
        // Algorithm 5: /U.
        let mut m = Md5::new();
        m.update(PAD);
        m.update(file_id);
        let mut u = rc4(&key, m.finalize().as_slice());
        for i in 1..=19u8 {
            let k: Vec<u8> = key.iter().map(|b| b ^ i).collect();
            u = rc4(&k, &u);
        }
        u.resize(32, 0);
        StandardSecurity {
            o,
            u: u.try_into().expect("resized to 32"),
            key,
        }
    }
}

/// Algorithm 1: the key for one object's strings and streams.
fn object_key(file_key: &[u8; 16], num: u32, generation: u16) -> Vec<u8> {
    let mut m = Md5::new();
    m.update(file_key);
    m.update(&num.to_le_bytes()[..3]);
    m.update(generation.to_le_bytes());
    m.finalize()[..16].to_vec()
}

/// RC4 (ARCFOUR): encryption and decryption are the same operation.
fn rc4(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut s: [u8; 256] = std::array::from_fn(|i| i as u8);
    let mut j = 0u8;
    for i in 0..256 {
        j = j.wrapping_add(s[i]).wrapping_add(key[i % key.len()]);
        s.swap(i, j as usize);
    }
    let (mut i, mut j) = (0u8, 0u8);
    data.iter()
        .map(|b| {
            i = i.wrapping_add(1);
            j = j.wrapping_add(s[i as usize]);
            s.swap(i as usize, j as usize);
            b ^ s[s[i as usize].wrapping_add(s[j as usize]) as usize]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rc4_matches_the_published_test_vector() {
        // "Key" / "Plaintext" from the RC4 article's test vectors.
        assert_eq!(hex(&rc4(b"Key", b"Plaintext")), "BBF316E8D940AF0AD3");
    }

    #[test]
    fn documents_have_a_valid_cross_reference_table() {
        let bytes = document(&[PageSpec::a4(vec!["a (b) c".into()])], None);
        let text = String::from_utf8_lossy(&bytes);
        let startxref: usize = text
            .rsplit("startxref\n")
            .next()
            .and_then(|t| t.lines().next())
            .and_then(|n| n.parse().ok())
            .expect("startxref");
        // Offsets are in bytes (the binary comment line makes the lossy text longer).
        assert!(bytes[startxref..].starts_with(b"xref\n"));
        assert!(text.contains("(a \\(b\\) c) '"));
    }
}
