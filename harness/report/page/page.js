(function(){
'use strict';
var D=JSON.parse(document.getElementById('data').textContent);
var INFRA=__INFRA__;
var PREFIX='nox -s matrix -- --case ';
var state={filter:'',format:'',operation:'',outcome:'',sort:'',dir:1,open:''};
function el(tag,text,cls){var e=document.createElement(tag);
 if(text!==undefined&&text!==null)e.textContent=String(text);if(cls)e.className=cls;return e;}
function str(i){return i===undefined||i===null?'':D.strings[i];}
function cellClass(c){if(!c)return 'o-empty';
 if(c.a)return c.p===c.a?'o-all':(c.p?'o-some':'o-none');
 if(c.i)return 'o-infra';return 'o-skip';}
function cellText(c){if(!c)return '';var t=c.a?(c.p+'/'+c.a):(c.i?'infra':(c.s?'skipped':''));
 if(c.a&&c.i)t+=' ⚠'+c.i;return t;}
function rowKey(r){return r.format+'/'+r.operation+'/'+r.api;}
function mKey(r,col){return 'm:'+rowKey(r)+'@'+col.key;}
function hasOutcome(r,want){for(var j=0;j<D.cols.length;j++){var c=D.cells[mKey(r,D.cols[j])];
 if(!c)continue;if(want==='fail'&&c.p<c.a)return true;if(want==='infra'&&c.i)return true;
 if(want==='skipped'&&c.s)return true;if(want==='passed'&&c.p)return true;
 if(want==='failed'||want==='error'){for(var k=0;k<c.c.length;k++)
 if(D.cases[c.c[k]].o===want)return true;}}return false;}
function ratio(c){if(!c)return 2;return c.a?c.p/c.a:(c.i?-1:1.5);}
function buildHead(){var thead=document.querySelector('#matrix-table thead');var tr=el('tr');
 var first=el('th',null,'rl');first.appendChild(el('b','format / operation / API'));
 first.dataset.sort='';tr.appendChild(first);
 D.cols.forEach(function(col){var th=el('th');th.dataset.sort=col.key;th.title='sort by '+col.key;
 th.appendChild(el('b',col.env));th.appendChild(el('div',col.mode));
 th.appendChild(el('div','TF '+(col.tf||'?')));th.appendChild(el('div','hub '+(col.hub||'?')));
 th.appendChild(el('div',col.keras||'keras ?'));
 th.appendChild(el('div',(col.device||'?')+' · '+(col.backend||'?')));tr.appendChild(th);});
 thead.appendChild(tr);
 tr.addEventListener('click',function(ev){var th=ev.target.closest('th');if(!th)return;
 var k=th.dataset.sort;if(state.sort===k)state.dir=-state.dir;else{state.sort=k;state.dir=1;}
 render();writeHash();});}
function visibleRows(){var f=state.filter.toLowerCase();var rows=D.rows.filter(function(r){
 if(state.format&&r.format!==state.format)return false;
 if(state.operation&&r.operation!==state.operation)return false;
 if(f&&rowKey(r).toLowerCase().indexOf(f)<0)return false;
 if(state.outcome&&!hasOutcome(r,state.outcome))return false;return true;});
 if(state.sort){var col=D.cols.filter(function(c){return c.key===state.sort;})[0];
 if(col)rows.sort(function(a,b){
  return state.dir*(ratio(D.cells[mKey(a,col)])-ratio(D.cells[mKey(b,col)]));});}
 else if(state.dir<0)rows.reverse();return rows;}
function render(){var tbody=document.querySelector('#matrix-table tbody');
 var rows=visibleRows();var frag=document.createDocumentFragment();
 rows.forEach(function(r){var tr=el('tr');tr.dataset.row=rowKey(r);
 tr.appendChild(el('th',rowKey(r),'rl'));
 D.cols.forEach(function(col){var key=mKey(r,col);var c=D.cells[key];
 var td=el('td',cellText(c),'m '+cellClass(c));if(c){td.dataset.key=key;td.tabIndex=0;
 td.title=key;}tr.appendChild(td);});frag.appendChild(tr);});
 tbody.textContent='';tbody.appendChild(frag);
 document.getElementById('row-count').textContent=rows.length+' of '+D.rows.length+' rows';}
function casesOf(key){if(key.indexOf('case:')===0){var id=key.slice(5);
 for(var i=0;i<D.cases.length;i++)if(D.cases[i].id===id)return {c:[i]};return null;}
 return key.indexOf('doc:')===0?D.doc[key]:D.cells[key];}
function copyButton(text){var b=el('button','copy','copy');b.type='button';
 b.addEventListener('click',function(){if(navigator.clipboard)navigator.clipboard.writeText(text);
 b.textContent='copied';});return b;}
function fmtErr(c){if(c.e===undefined)return '';var t=String(c.e);
 if(c.r!==undefined)t+=' (rel '+c.r+')';return t+' vs '+D.tolerance;}
function caseRow(i){var c=D.cases[i];var tr=el('tr');tr.dataset.testid='drilldown-row';
 tr.setAttribute('data-testid','drilldown-row');tr.dataset.case=c.id;
 var o=el('td',INFRA[c.o]?c.o+' (infrastructure)':c.o,'out-'+c.o);tr.appendChild(o);
 var id=el('td');id.appendChild(el('code',c.id));if(c.v)id.appendChild(el('div','via '+c.v));
 tr.appendChild(id);tr.appendChild(el('td',c.p||''));
 var err=el('td');if(c.t!==undefined)err.appendChild(el('b',str(c.t)+': '));
 if(c.m!==undefined)err.appendChild(el('span',str(c.m)));
 if(c.tb!==undefined)err.appendChild(el('pre',str(c.tb)));tr.appendChild(err);
 tr.appendChild(el('td',fmtErr(c)));tr.appendChild(el('td',c.d!==undefined?c.d+' s':''));
 var repro=c.x||(PREFIX+c.id);var rp=el('td');rp.appendChild(el('code',repro));
 rp.appendChild(copyButton(repro));tr.appendChild(rp);return tr;}
function open(key){var aside=document.getElementById('drill');var cell=key?casesOf(key):null;
 state.open=cell?key:'';if(!cell){aside.hidden=true;return;}
 document.getElementById('drill-title').textContent=key;
 var counts={};cell.c.forEach(function(i){var o=D.cases[i].o;counts[o]=(counts[o]||0)+1;});
 document.getElementById('drill-summary').textContent=cell.c.length+' cases: '+
 Object.keys(counts).sort().map(function(o){return counts[o]+' '+o;}).join(', ');
 var rows=document.getElementById('drill-rows');rows.textContent='';
 var order=cell.c.slice().sort(function(a,b){
  var pa=D.cases[a].o==='passed',pb=D.cases[b].o==='passed';return pa===pb?a-b:(pa?1:-1);});
 var frag=document.createDocumentFragment();
 order.forEach(function(i){frag.appendChild(caseRow(i));});
 rows.appendChild(frag);aside.hidden=false;}
function readHash(){var h=location.hash.replace(/^#/,'');var p={};
 h.split('&').forEach(function(kv){if(!kv)return;var i=kv.indexOf('=');
 var k=i<0?kv:kv.slice(0,i);var v=i<0?'':kv.slice(i+1);
 try{p[k]=decodeURIComponent(v.replace(/\+/g,' '));}catch(e){p[k]=v;}});return p;}
function writeHash(){var parts=[];
 ['filter','format','operation','outcome','sort','open'].forEach(function(k){
 if(state[k])parts.push(k+'='+encodeURIComponent(state[k]).replace(/%2F/g,'/').replace(/%40/g,'@').replace(/%3A/g,':'));});
 if(state.sort&&state.dir<0)parts.push('dir=desc');
 var h=parts.length?'#'+parts.join('&'):' ';
 if(history.replaceState)history.replaceState(null,'',h===' '?location.pathname+location.search:h);
 else location.hash=h;}
function applyHash(){var p=readHash();state.filter=p.filter||'';state.format=p.format||'';
 state.operation=p.operation||'';state.outcome=p.outcome||'';state.sort=p.sort||'';
 state.dir=p.dir==='desc'?-1:1;
 document.getElementById('filter').value=state.filter;
 document.getElementById('f-format').value=state.format;
 document.getElementById('f-operation').value=state.operation;
 document.getElementById('f-outcome').value=state.outcome;render();open(p.open||'');}
function fillSelect(id,values){var s=document.getElementById(id);
 values.forEach(function(v){var o=el('option',v);o.value=v;s.appendChild(o);});}
function uniq(f){var seen={},out=[];
 D.rows.forEach(function(r){if(!seen[r[f]]){seen[r[f]]=1;out.push(r[f]);}});return out;}
fillSelect('f-format',uniq('format'));fillSelect('f-operation',uniq('operation'));buildHead();
document.getElementById('filter').addEventListener('input',function(e){
 state.filter=e.target.value;render();writeHash();});
[['f-format','format'],['f-operation','operation'],['f-outcome','outcome']].forEach(function(p){
 document.getElementById(p[0]).addEventListener('change',function(e){state[p[1]]=e.target.value;render();writeHash();});});
function onActivate(ev){var t=ev.target.closest('[data-key]');if(!t)return;
 if(ev.type==='keydown'&&ev.key!=='Enter')return;open(t.dataset.key);writeHash();}
document.addEventListener('click',onActivate);document.addEventListener('keydown',onActivate);
document.getElementById('drill-close').addEventListener('click',function(){open('');writeHash();});
window.addEventListener('hashchange',applyHash);applyHash();
document.body.setAttribute('data-ready','1');
})();
