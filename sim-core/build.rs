//! Generates Rust (and the text of the Python bindings) from the port IDL,
//! `ports/dualplane.ports.toml`. Output goes to OUT_DIR: `ports_gen.rs`
//! (included by `src/ports.rs`), `_ports.py` and `_ports.pyi` (embedded as
//! strings, written into policy-py by `dualplane ports gen-python`).

// Every unwrap here is on `write!` into a String, which cannot fail.
#![allow(clippy::unwrap_used)]

use serde::Deserialize;
use std::fmt::Write as _;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Idl {
    semver: String,
    calls: Vec<Call>,
    status: Vec<Status>,
    archetypes: Vec<ArchetypeDef>,
    columns: Vec<Column>,
    microplan: Microplan,
    ops: Vec<OpDef>,
    roles: Vec<RoleDef>,
    journal: Journal,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleDef {
    id: u8,
    name: String,
    ops: Vec<String>,
    max_ops_per_plan: u32,
    budget_per_tick: u64,
    doc: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Call {
    id: u16,
    name: String,
    #[serde(default)]
    request: String,
    #[serde(default)]
    response: String,
    #[serde(default)]
    reserved: bool,
    doc: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Status {
    code: u16,
    name: String,
    message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchetypeDef {
    id: u8,
    name: String,
    kinematic: bool,
    columns: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Column {
    id: u16,
    name: String,
    #[serde(rename = "type")]
    ty: String,
    unit: String,
    quant: String,
    #[serde(default)]
    scale: f64,
    #[serde(default)]
    bits: u8,
    #[serde(default)]
    doc: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Microplan {
    magic: String,
    version: u16,
    header_size: u32,
    section_entry_size: u32,
    alignment: u32,
    max_plan_bytes: u32,
    max_ops_per_plan: u32,
    max_ops_per_source_tick: u32,
    max_bytes_per_source_tick: u32,
    max_tick_lead: u32,
    max_overlap_hits: u32,
    max_cost_per_source_tick: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpDef {
    kind: u16,
    name: String,
    cost: u32,
    #[serde(default)]
    cost_per_m: f64,
    #[serde(default)]
    cost_per_m3: f64,
    doc: String,
    fields: Vec<Field>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Field {
    name: String,
    #[serde(rename = "type")]
    ty: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Journal {
    tick: Vec<JournalField>,
    plan: Vec<JournalField>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JournalField {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    doc: String,
}

fn pascal(s: &str) -> String {
    s.split('_')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect()
}

fn field_type(ty: &str) -> (&'static str, u32, &'static str, u32) {
    // (Rust FieldType variant, element size, numpy dtype, components)
    match ty {
        "u32" => ("U32", 4, "<u4", 1),
        "u64" => ("U64", 8, "<u8", 1),
        "f32" => ("F32", 4, "<f4", 1),
        "f32x3" => ("F32x3", 12, "<f4", 3),
        "f32x4" => ("F32x4", 16, "<f4", 4),
        other => panic!("IDL: unknown field type {other:?}"),
    }
}

fn col_type(ty: &str) -> &'static str {
    match ty {
        "u64" => "U64",
        "u32" => "U32",
        "i32" => "I32",
        "f32" => "F32",
        other => panic!("IDL: unknown column type {other:?}"),
    }
}

fn main() {
    let path = "ports/dualplane.ports.toml";
    println!("cargo:rerun-if-changed={path}");
    let bytes = std::fs::read(path).expect("read the port IDL");
    let text = String::from_utf8(bytes.clone()).expect("IDL is UTF-8");
    let idl: Idl = toml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let hash = xxhash_rust::xxh3::xxh3_64(&bytes);

    // Checks that keep the generated code sound.
    for (i, s) in idl.status.iter().enumerate() {
        assert_eq!(usize::from(s.code), i, "status codes must be dense from 0");
    }
    for (i, c) in idl.columns.iter().enumerate() {
        assert_eq!(usize::from(c.id), i, "column ids must be dense from 0");
    }
    for (i, a) in idl.archetypes.iter().enumerate() {
        assert_eq!(usize::from(a.id), i, "archetype ids must be dense from 0");
        assert_eq!(a.columns.first().map(String::as_str), Some("handle"), "every archetype starts with handle");
        for c in &a.columns {
            assert!(idl.columns.iter().any(|k| &k.name == c), "archetype {} names unknown column {c}", a.name);
        }
    }
    for (i, o) in idl.ops.iter().enumerate() {
        assert_eq!(usize::from(o.kind), i + 1, "op kinds must be dense from 1");
    }
    for (i, r) in idl.roles.iter().enumerate() {
        assert_eq!(usize::from(r.id), i + 1, "role ids must be dense from 1");
        for o in &r.ops {
            assert!(idl.ops.iter().any(|k| &k.name == o), "role {} names unknown op {o}", r.name);
        }
    }
    let mp = &idl.microplan;
    assert_eq!(mp.magic.len(), 4);

    let mut r = String::new();
    let w = &mut r;
    writeln!(w, "// @generated by sim-core/build.rs from ports/dualplane.ports.toml. Do not edit.").unwrap();
    writeln!(w, "/// The port IDL's SemVer.\npub const PORTS_SEMVER: &str = {:?};", idl.semver).unwrap();
    writeln!(w, "/// xxh3-64 of the IDL file's bytes.\npub const PORTS_SCHEMA_HASH: u64 = {hash:#018x};").unwrap();

    // Status.
    writeln!(w, "/// Status codes of every port call (generated from the IDL).").unwrap();
    writeln!(w, "#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]\n#[repr(u16)]\npub enum Status {{").unwrap();
    for s in &idl.status {
        writeln!(w, "    /// {}\n    {} = {},", s.message, pascal(&s.name), s.code).unwrap();
    }
    writeln!(w, "}}\nimpl Status {{").unwrap();
    writeln!(w, "    pub const ALL: [Status; {}] = [{}];", idl.status.len(), idl.status.iter().map(|s| format!("Status::{}", pascal(&s.name))).collect::<Vec<_>>().join(", ")).unwrap();
    writeln!(w, "    #[must_use]\n    pub fn message(self) -> &'static str {{\n        match self {{").unwrap();
    for s in &idl.status {
        writeln!(w, "            Status::{} => {:?},", pascal(&s.name), s.message).unwrap();
    }
    writeln!(w, "        }}\n    }}\n    #[must_use]\n    pub fn name(self) -> &'static str {{\n        match self {{").unwrap();
    for s in &idl.status {
        writeln!(w, "            Status::{} => {:?},", pascal(&s.name), s.name).unwrap();
    }
    writeln!(w, "        }}\n    }}\n    #[must_use]\n    pub fn from_u16(v: u16) -> Option<Status> {{\n        Status::ALL.get(usize::from(v)).copied()\n    }}\n}}").unwrap();

    // Columns.
    writeln!(w, "/// Every column any archetype may have; discriminants are stable ids and hash order.").unwrap();
    writeln!(w, "#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]\n#[repr(u16)]\npub enum ColumnId {{").unwrap();
    for c in &idl.columns {
        if !c.doc.is_empty() {
            writeln!(w, "    /// {}", c.doc).unwrap();
        }
        writeln!(w, "    {} = {},", pascal(&c.name), c.id).unwrap();
    }
    writeln!(w, "}}").unwrap();
    writeln!(w, "/// Column schemas, indexed by `ColumnId as usize`.\npub const COLUMNS: [ColumnDesc; {}] = [", idl.columns.len()).unwrap();
    for c in &idl.columns {
        let quant = match c.quant.as_str() {
            "none" => "Quant::None".to_string(),
            "fixed" => format!("Quant::Fixed {{ scale: {:?}, bits: {} }}", c.scale as f32, c.bits),
            "smallest3" => format!("Quant::Smallest3 {{ bits: {} }}", c.bits),
            q => panic!("IDL: column {}: unknown quant {q:?}", c.name),
        };
        writeln!(w, "    ColumnDesc {{ id: ColumnId::{}, name: {:?}, ty: ColumnType::{}, unit: {:?}, quant: {quant} }},", pascal(&c.name), c.name, col_type(&c.ty), c.unit).unwrap();
    }
    writeln!(w, "];").unwrap();
    writeln!(w, "/// Columns of each archetype (indexed by archetype id), in hash order.\npub const ARCHETYPE_COLUMNS: [&[ColumnId]; {}] = [", idl.archetypes.len()).unwrap();
    for a in &idl.archetypes {
        writeln!(w, "    &[{}],", a.columns.iter().map(|c| format!("ColumnId::{}", pascal(c))).collect::<Vec<_>>().join(", ")).unwrap();
    }
    writeln!(w, "];").unwrap();
    writeln!(w, "/// (id, name, kinematic) per archetype, as the IDL declares them.\npub const ARCHETYPES_IDL: [(u8, &str, bool); {}] = [{}];", idl.archetypes.len(), idl.archetypes.iter().map(|a| format!("({}, {:?}, {})", a.id, a.name, a.kinematic)).collect::<Vec<_>>().join(", ")).unwrap();

    // Ops.
    writeln!(w, "/// Microplan op kinds (section kinds).").unwrap();
    writeln!(w, "#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]\n#[repr(u16)]\npub enum OpKind {{").unwrap();
    for o in &idl.ops {
        writeln!(w, "    /// {}\n    {} = {},", o.doc, pascal(&o.name), o.kind).unwrap();
    }
    writeln!(w, "}}\nimpl OpKind {{").unwrap();
    writeln!(w, "    pub const ALL: [OpKind; {}] = [{}];", idl.ops.len(), idl.ops.iter().map(|o| format!("OpKind::{}", pascal(&o.name))).collect::<Vec<_>>().join(", ")).unwrap();
    writeln!(w, "    #[must_use]\n    pub fn from_u16(v: u16) -> Option<OpKind> {{\n        v.checked_sub(1).and_then(|i| OpKind::ALL.get(usize::from(i))).copied()\n    }}").unwrap();
    writeln!(w, "    #[must_use]\n    pub fn name(self) -> &'static str {{\n        match self {{").unwrap();
    for o in &idl.ops {
        writeln!(w, "            OpKind::{} => {:?},", pascal(&o.name), o.name).unwrap();
    }
    writeln!(w, "        }}\n    }}\n    /// The section's fields, in layout order.\n    #[must_use]\n    pub fn fields(self) -> &'static [FieldDesc] {{\n        match self {{").unwrap();
    for o in &idl.ops {
        let fs: Vec<String> = o.fields.iter().map(|f| {
            let (v, size, _, _) = field_type(&f.ty);
            format!("FieldDesc {{ name: {:?}, ty: FieldType::{v}, size: {size} }}", f.name)
        }).collect();
        writeln!(w, "            OpKind::{} => &[{}],", pascal(&o.name), fs.join(", ")).unwrap();
    }
    writeln!(w, "        }}\n    }}").unwrap();
    writeln!(w, "    /// The op's cost model (units; see the IDL).\n    #[must_use]\n    pub fn cost(self) -> OpCost {{\n        match self {{").unwrap();
    for o in &idl.ops {
        writeln!(w, "            OpKind::{} => OpCost {{ base: {}, per_m: {:?}, per_m3: {:?} }},", pascal(&o.name), o.cost, o.cost_per_m, o.cost_per_m3).unwrap();
    }
    writeln!(w, "        }}\n    }}\n}}").unwrap();
    writeln!(w, "/// What each client role may send (ids as on the wire: 1 player, 2 policy, 3 observer).\npub const ROLES: [RoleDesc; {}] = [", idl.roles.len()).unwrap();
    for r in &idl.roles {
        let ops: Vec<String> = r.ops.iter().map(|o| format!("OpKind::{}", pascal(o))).collect();
        writeln!(w, "    // {}\n    RoleDesc {{ id: {}, name: {:?}, ops: &[{}], max_ops_per_plan: {}, budget_per_tick: {} }},", r.doc, r.id, r.name, ops.join(", "), r.max_ops_per_plan, r.budget_per_tick).unwrap();
    }
    writeln!(w, "];").unwrap();

    // Port calls.
    writeln!(w, "/// Port calls (ids are stable).\n#[derive(Clone, Copy, Debug, PartialEq, Eq)]\n#[repr(u16)]\npub enum PortCall {{").unwrap();
    for c in &idl.calls {
        writeln!(w, "    /// {}{}\n    {} = {},", c.doc, if c.reserved { " (reserved)" } else { "" }, pascal(&c.name), c.id).unwrap();
    }
    writeln!(w, "}}").unwrap();

    // Microplan constants.
    writeln!(w, "pub const PLAN_MAGIC: [u8; 4] = *b{:?};", mp.magic).unwrap();
    writeln!(w, "pub const PLAN_VERSION: u16 = {};", mp.version).unwrap();
    writeln!(w, "pub const PLAN_HEADER_SIZE: usize = {};", mp.header_size).unwrap();
    writeln!(w, "pub const PLAN_SECTION_ENTRY_SIZE: usize = {};", mp.section_entry_size).unwrap();
    writeln!(w, "pub const PLAN_ALIGN: usize = {};", mp.alignment).unwrap();
    writeln!(w, "pub const MAX_PLAN_BYTES: usize = {};", mp.max_plan_bytes).unwrap();
    writeln!(w, "pub const MAX_OPS_PER_PLAN: u32 = {};", mp.max_ops_per_plan).unwrap();
    writeln!(w, "pub const MAX_OPS_PER_SOURCE_TICK: u32 = {};", mp.max_ops_per_source_tick).unwrap();
    writeln!(w, "pub const MAX_BYTES_PER_SOURCE_TICK: u32 = {};", mp.max_bytes_per_source_tick).unwrap();
    writeln!(w, "pub const MAX_TICK_LEAD: u64 = {};", mp.max_tick_lead).unwrap();
    writeln!(w, "pub const MAX_OVERLAP_HITS: u32 = {};", mp.max_overlap_hits).unwrap();
    writeln!(w, "pub const MAX_COST_PER_SOURCE_TICK: u64 = {};", mp.max_cost_per_source_tick).unwrap();

    let out = std::env::var("OUT_DIR").expect("OUT_DIR");
    std::fs::write(format!("{out}/ports_gen.rs"), r).expect("write ports_gen.rs");

    // ---- Python ----
    let mut py = String::new();
    let p = &mut py;
    writeln!(p, "# @generated by sim-core/build.rs from sim-core/ports/dualplane.ports.toml.").unwrap();
    writeln!(p, "# Do not edit: run `dualplane ports gen-python`.").unwrap();
    writeln!(p, "\"\"\"Port constants shared with the Rust data plane (IDL v{}).\"\"\"\n", idl.semver).unwrap();
    writeln!(p, "from enum import IntEnum\n").unwrap();
    writeln!(p, "PORTS_SEMVER = {:?}", idl.semver).unwrap();
    writeln!(p, "PORTS_SCHEMA_HASH = {hash:#018x}\n").unwrap();
    writeln!(p, "PLAN_MAGIC = b{:?}", mp.magic).unwrap();
    for (k, v) in [
        ("PLAN_VERSION", u64::from(mp.version)),
        ("PLAN_HEADER_SIZE", u64::from(mp.header_size)),
        ("PLAN_SECTION_ENTRY_SIZE", u64::from(mp.section_entry_size)),
        ("PLAN_ALIGN", u64::from(mp.alignment)),
        ("MAX_PLAN_BYTES", u64::from(mp.max_plan_bytes)),
        ("MAX_OPS_PER_PLAN", u64::from(mp.max_ops_per_plan)),
        ("MAX_OPS_PER_SOURCE_TICK", u64::from(mp.max_ops_per_source_tick)),
        ("MAX_BYTES_PER_SOURCE_TICK", u64::from(mp.max_bytes_per_source_tick)),
        ("MAX_TICK_LEAD", u64::from(mp.max_tick_lead)),
        ("MAX_OVERLAP_HITS", u64::from(mp.max_overlap_hits)),
        ("MAX_COST_PER_SOURCE_TICK", mp.max_cost_per_source_tick),
    ] {
        writeln!(p, "{k} = {v}").unwrap();
    }
    writeln!(p, "\n\nclass Status(IntEnum):\n    \"\"\"Status codes of every port call.\"\"\"\n").unwrap();
    for s in &idl.status {
        writeln!(p, "    {} = {}", s.name, s.code).unwrap();
    }
    writeln!(p, "\n\nSTATUS_MESSAGES = {{").unwrap();
    for s in &idl.status {
        writeln!(p, "    Status.{}: {:?},", s.name, s.message).unwrap();
    }
    writeln!(p, "}}\n\n\nclass OpKind(IntEnum):\n    \"\"\"Microplan op kinds (section kinds).\"\"\"\n").unwrap();
    for o in &idl.ops {
        writeln!(p, "    {} = {}", o.name.to_uppercase(), o.kind).unwrap();
    }
    writeln!(p, "\n\n# Per op kind: (field name, numpy dtype, components per element), in layout order.\nOP_FIELDS = {{").unwrap();
    for o in &idl.ops {
        let fs: Vec<String> = o.fields.iter().map(|f| {
            let (_, _, dt, n) = field_type(&f.ty);
            format!("({:?}, {:?}, {n})", f.name, dt)
        }).collect();
        writeln!(p, "    OpKind.{}: [{}],", o.name.to_uppercase(), fs.join(", ")).unwrap();
    }
    writeln!(p, "}}\n\n# Per op kind: (base cost, cost per metre of ray, cost per cubic metre of box).\nOP_COSTS = {{").unwrap();
    for o in &idl.ops {
        writeln!(p, "    OpKind.{}: ({}, {:?}, {:?}),", o.name.to_uppercase(), o.cost, o.cost_per_m, o.cost_per_m3).unwrap();
    }
    writeln!(p, "}}\n\n# Role name -> (op kinds it may send, max ops per plan, cost budget per tick).\nROLES = {{").unwrap();
    for r in &idl.roles {
        let ops: Vec<String> = r.ops.iter().map(|o| format!("OpKind.{}", o.to_uppercase())).collect();
        writeln!(p, "    {:?}: (frozenset({{{}}}), {}, {}),", r.name, ops.join(", "), r.max_ops_per_plan, r.budget_per_tick).unwrap();
    }
    writeln!(p, "}}\n\n\nclass Archetype(IntEnum):\n    \"\"\"Entity archetypes (one table each).\"\"\"\n").unwrap();
    for a in &idl.archetypes {
        writeln!(p, "    {} = {}", a.name.to_uppercase(), a.id).unwrap();
    }
    writeln!(p, "\n\nARCHETYPE_COLUMNS = {{").unwrap();
    for a in &idl.archetypes {
        writeln!(p, "    Archetype.{}: {:?},", a.name.to_uppercase(), a.columns).unwrap();
    }
    writeln!(p, "}}\n\n\nclass ColumnId(IntEnum):\n    \"\"\"Column ids (stable; also the hash order within a table).\"\"\"\n").unwrap();
    for c in &idl.columns {
        writeln!(p, "    {} = {}", c.name.to_uppercase(), c.id).unwrap();
    }
    writeln!(p, "\n\n# name -> (numpy dtype, unit, quantization)\nCOLUMNS = {{").unwrap();
    for c in &idl.columns {
        let dt = match c.ty.as_str() { "u64" => "<u8", "u32" => "<u4", "i32" => "<i4", _ => "<f4" };
        writeln!(p, "    {:?}: ({dt:?}, {:?}, {:?}),", c.name, c.unit, c.quant).unwrap();
    }
    writeln!(p, "}}\n\n\nclass PortCall(IntEnum):\n    \"\"\"Port calls.\"\"\"\n").unwrap();
    for c in &idl.calls {
        writeln!(p, "    {} = {}", c.name.to_uppercase(), c.id).unwrap();
    }
    writeln!(p, "\n\nRESERVED_CALLS = frozenset({{{}}})", idl.calls.iter().filter(|c| c.reserved).map(|c| format!("PortCall.{}", c.name.to_uppercase())).collect::<Vec<_>>().join(", ")).unwrap();
    writeln!(p, "\n# Journal fields: name -> (type, doc)\nTICK_JOURNAL_FIELDS = {{").unwrap();
    for f in &idl.journal.tick {
        writeln!(p, "    {:?}: ({:?}, {:?}),", f.name, f.ty, f.doc).unwrap();
    }
    writeln!(p, "}}\nPLAN_JOURNAL_FIELDS = {{").unwrap();
    for f in &idl.journal.plan {
        writeln!(p, "    {:?}: ({:?}, {:?}),", f.name, f.ty, f.doc).unwrap();
    }
    writeln!(p, "}}").unwrap();
    // Request/response names are read (deny_unknown_fields) but not generated yet.
    for c in &idl.calls {
        let _ = (&c.request, &c.response);
    }
    std::fs::write(format!("{out}/_ports.py"), py).expect("write _ports.py");

    // ---- .pyi ----
    let mut pyi = String::new();
    let q = &mut pyi;
    writeln!(q, "# @generated by sim-core/build.rs. Do not edit: run `dualplane ports gen-python`.").unwrap();
    writeln!(q, "from enum import IntEnum\n").unwrap();
    writeln!(q, "PORTS_SEMVER: str\nPORTS_SCHEMA_HASH: int\nPLAN_MAGIC: bytes").unwrap();
    for k in ["PLAN_VERSION", "PLAN_HEADER_SIZE", "PLAN_SECTION_ENTRY_SIZE", "PLAN_ALIGN", "MAX_PLAN_BYTES", "MAX_OPS_PER_PLAN", "MAX_OPS_PER_SOURCE_TICK", "MAX_BYTES_PER_SOURCE_TICK", "MAX_TICK_LEAD", "MAX_OVERLAP_HITS", "MAX_COST_PER_SOURCE_TICK"] {
        writeln!(q, "{k}: int").unwrap();
    }
    for (cls, names) in [
        ("Status", idl.status.iter().map(|s| s.name.clone()).collect::<Vec<_>>()),
        ("OpKind", idl.ops.iter().map(|o| o.name.to_uppercase()).collect()),
        ("Archetype", idl.archetypes.iter().map(|a| a.name.to_uppercase()).collect()),
        ("ColumnId", idl.columns.iter().map(|c| c.name.to_uppercase()).collect()),
        ("PortCall", idl.calls.iter().map(|c| c.name.to_uppercase()).collect()),
    ] {
        writeln!(q, "\nclass {cls}(IntEnum):").unwrap();
        for n in names {
            writeln!(q, "    {n}: int").unwrap();
        }
    }
    writeln!(q, "\nSTATUS_MESSAGES: dict[Status, str]").unwrap();
    writeln!(q, "OP_FIELDS: dict[OpKind, list[tuple[str, str, int]]]").unwrap();
    writeln!(q, "OP_COSTS: dict[OpKind, tuple[int, float, float]]").unwrap();
    writeln!(q, "ROLES: dict[str, tuple[frozenset[OpKind], int, int]]").unwrap();
    writeln!(q, "ARCHETYPE_COLUMNS: dict[Archetype, list[str]]").unwrap();
    writeln!(q, "COLUMNS: dict[str, tuple[str, str, str]]").unwrap();
    writeln!(q, "RESERVED_CALLS: frozenset[PortCall]").unwrap();
    writeln!(q, "TICK_JOURNAL_FIELDS: dict[str, tuple[str, str]]").unwrap();
    writeln!(q, "PLAN_JOURNAL_FIELDS: dict[str, tuple[str, str]]").unwrap();
    std::fs::write(format!("{out}/_ports.pyi"), pyi).expect("write _ports.pyi");
}
