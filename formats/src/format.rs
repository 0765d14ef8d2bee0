//! The disk formats the inspector recognises, under Glance's names.

use std::fmt;

use serde::Serialize;

/// A disk-image format, named as Glance names `disk_format` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// No recognised structure: the bytes are the disk.
    Raw,
    /// QEMU copy-on-write v2/v3 (and the obsolete v1, which shares its magic).
    Qcow2,
    /// QEMU enhanced disk: recognised only to be refused.
    Qed,
    /// Microsoft Virtual PC / Hyper-V VHD (`vpc` in qemu), fixed or dynamic.
    Vhd,
    /// Microsoft VHDX.
    Vhdx,
    /// VMware VMDK: sparse extents and descriptor files.
    Vmdk,
    /// VirtualBox VDI.
    Vdi,
    /// ISO 9660 / UDF optical-disc image.
    Iso,
    /// A raw disk that starts with an MBR or a protective MBR (GPT).
    Gpt,
    /// LUKS v1 encrypted volume.
    Luks,
}

impl Format {
    /// Every format, in the order of the detection table (docs/glance-v2-api.md §7.1).
    pub const ALL: [Format; 10] = [
        Format::Raw,
        Format::Qcow2,
        Format::Qed,
        Format::Vhd,
        Format::Vhdx,
        Format::Vmdk,
        Format::Vdi,
        Format::Iso,
        Format::Gpt,
        Format::Luks,
    ];

    /// Glance's name for the format (`disk_format` value).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Qed => "qed",
            Format::Vhd => "vhd",
            Format::Vhdx => "vhdx",
            Format::Vmdk => "vmdk",
            Format::Vdi => "vdi",
            Format::Iso => "iso",
            Format::Gpt => "gpt",
            Format::Luks => "luks",
        }
    }

    /// The format with Glance's name `name`; `None` for names the inspector cannot recognise
    /// (`ami`, `ari`, `aki`, `ploop`, ...), which are exactly the non-inspectable formats.
    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|format| format.as_str() == name)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
